'use strict'
// A listing hands every entry's stat to the FUSE addon's stat cache (scripts/patch-fuse-native.js),
// and so does every getattr and create answered in JavaScript; the addon answers getattr from
// it for up to a second: every change must forget the path, or `stat` right after `ls -l` or
// an earlier `stat` would show what the file was. And `ls -l` asks no more attribute round trips than
// it must: extended attributes other than user.* are not supported, said once per listing.
// The addon also keeps listings (a directory made or listed here) and answers the lookup of
// a name that is not in one ENOENT itself: a name a peer adds later must then be found.
const test = require('brittle')
const { startTestnet, Device, newSecret, sh, waitFor, folderWith } = require('./helpers')

test('stat right after a listing or a stat shows every change at once', { timeout: 120000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')
  await a.mount(await newSecret())
  const d = JSON.stringify(a.p('d'))
  const f = JSON.stringify(a.p('d/f'))
  const g = JSON.stringify(a.p('d/g'))
  t.is((await sh(`mkdir ${d}`)).code, 0, 'a directory')

  // Each line: fill the cache (twice: the second time from it), change, stat at once; all
  // in one shell, well within a second.
  const cases = [
    ['append', `printf abc >> ${f}`, `stat -c %s ${f}`, '8'],
    ['truncate', `truncate -s 2 ${f}`, `stat -c %s ${f}`, '2'],
    ['overwrite (O_TRUNC)', `printf xyz > ${f}`, `stat -c %s ${f}`, '3'],
    ['writes through an open file', `exec 3>>${f} && printf ab >&3 && stat -c %s ${f} && printf cd >&3 && exec 3>&-`, `stat -c %s ${f}`, '5\n7'],
    ['chmod', `chmod 600 ${f}`, `stat -c %a ${f}`, '600'],
    ['touch -d', `touch -d @1000000000 ${f}`, `stat -c %Y ${f}`, '1000000000'],
    ['rename', `mv ${f} ${g}`, `stat -c %s ${g}; stat ${f} 2>&1 | grep -c 'No such file'`, '7\n1'],
    ['unlink', `rm ${g}`, `stat ${g} 2>&1 | grep -c 'No such file'`, '1'],
    ['mkdir', `mkdir ${f}`, `stat -c %F ${f}`, 'directory'],
    ['rmdir', `rmdir ${f}`, `stat ${f} 2>&1 | grep -c 'No such file'`, '1']
  ]
  const fillers = [
    ['ls -l', `ls -l ${d} > /dev/null; ls -l ${d} > /dev/null`],
    ['stat', `stat ${d} ${f} ${g} > /dev/null 2>&1; stat ${d} ${f} ${g} > /dev/null 2>&1`]
  ]
  for (const [how, fill] of fillers) {
    t.is((await sh(`printf 12345 > ${f}`)).code, 0, 'a file to change')
    for (const [name, change, check, expected] of cases) {
      const res = await sh(`${fill}; ${change} && ${check}`)
      t.is(res.stdout.trim(), expected, `${name}: stat after ${how} shows it (${res.stderr.trim()})`)
    }
  }
  // A new file's stat comes from its create: the writes after it must show.
  const fresh = await sh(`exec 3>${a.p('d/new')} && stat -c %s ${a.p('d/new')} && printf 1234 >&3 && stat -c %s ${a.p('d/new')} && exec 3>&-`)
  t.is(fresh.stdout.trim(), '0\n4', `a new file's size after its create and after a write (${fresh.stderr.trim()})`)
})

test('ls -l learns once that only user.* extended attributes exist; user.tsyncfs.local still answers', { timeout: 120000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')
  await a.mount(await newSecret())
  const f = JSON.stringify(a.p('f'))
  t.is((await sh(`printf 12345 > ${f}`)).code, 0, 'a file')
  // ENOTSUP (not ENODATA) is what tells coreutils to stop asking for ACLs and SELinux labels
  // of the rest of the file system: two FUSE round trips per file listed.
  for (const name of ['security.selinux', 'system.posix_acl_access', 'trusted.x']) {
    const res = await sh(`getfattr -n ${name} ${f}`)
    t.ok(res.code !== 0 && /Operation not supported/.test(res.stderr), `getfattr -n ${name}: not supported (${res.stderr.trim()})`)
  }
  const local = await sh(`getfattr --only-values -n user.tsyncfs.local ${f}`)
  t.is(local.stdout.trim(), '5/5 bytes (100.0%)', 'user.tsyncfs.local still answers')
  const missing = await sh(`getfattr -n user.other ${f}`)
  t.ok(missing.code !== 0 && /No such attribute/.test(missing.stderr), `an unknown user.* attribute is missing, not unsupported (${missing.stderr.trim()})`)
})

test('a name the addon answered ENOENT for is found once a peer makes it', { timeout: 120000 }, async (t) => {
  const { devices: [a, b] } = await folderWith(t, ['A', 'B'])
  // 'made' gets its listing from A's mkdir, 'listed' (made on B) from a readdir on A.
  t.is((await sh(`mkdir ${a.p('made')} && printf 1 > ${a.p('made/old')}`)).code, 0, 'a directory made on A')
  t.is((await sh(`mkdir ${b.p('listed')}`)).code, 0, 'a directory made on B')
  await b.waitForContent('made/old', '1')
  await waitFor(async () => (await sh(`test -d ${a.p('listed')}`)).code === 0, { message: 'A to have listed/' })
  t.is((await sh(`ls ${a.p('listed')}`)).stdout, '', 'listed on A: empty')
  for (const dir of ['made', 'listed']) {
    const res = await sh(`stat ${a.p(dir + '/new')}`)
    t.ok(res.code !== 0 && /No such file/.test(res.stderr), `${dir}/new does not exist yet (${res.stderr.trim()})`)
  }

  // Looked up by name only (open, stat), never listed again: a new listing would hide a
  // listing that missed the peer's change.
  for (const dir of ['made', 'listed']) {
    t.is((await sh(`printf ${dir} > ${b.p(dir + '/new')} && mkdir ${b.p(dir + '/sub')}`)).code, 0, `B makes ${dir}/new and ${dir}/sub`)
  }
  for (const dir of ['made', 'listed']) {
    await a.waitForContent(dir + '/new', dir)
    await waitFor(async () => (await sh(`test -d ${a.p(dir + '/sub')}`)).code === 0, { message: `A to find ${dir}/sub` })
    t.pass(`A finds ${dir}/new and ${dir}/sub`)
  }
  // A name the peer removes goes, and one it brings back comes back.
  t.is((await sh(`rm ${b.p('made/old')}`)).code, 0, 'B removes made/old')
  await a.waitForMissing('made/old')
  t.is((await sh(`printf 2 > ${b.p('made/old')}`)).code, 0, 'and makes it again')
  await a.waitForContent('made/old', '2')
  t.pass('A follows both')
})
