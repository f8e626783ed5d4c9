'use strict'
// Three devices mount one folder; everything done in one mount shows in the others.
const test = require('brittle')
const fs = require('fs').promises
const { startTestnet, Device, newSecret, waitFor, randomBytes, sh, folderWith } = require('./helpers')

async function threeDevices (t) {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const devices = [new Device(t, bootstrap, 'A'), new Device(t, bootstrap, 'B'), new Device(t, bootstrap, 'C')]
  for (const d of devices) await d.mount(secret)
  return devices
}

/** Waits until `rel` has the same listing (ls -lR, without times) on every device. */
async function converge (devices, rel = '.') {
  const listing = async (d) => (await d.sh(`find ${rel} -mindepth 1 -printf '%p %y %s %m %T@ %l\\n' | sort`)).stdout
  let all = []
  try {
    await waitFor(async () => {
      all = await Promise.all(devices.map(listing))
      return all.every((l) => l === all[0])
    }, { timeout: 60000, message: 'devices to converge' })
  } catch (err) {
    console.log(all.map((l, i) => `--- ${devices[i].name}\n${l}`).join('\n'))
    throw err
  }
  return listing(devices[0])
}

test('every operation in one mount appears in all others', { timeout: 300000 }, async (t) => {
  const [a, b, c] = await threeDevices(t)

  // create, write, empty files and directories, odd names
  await fs.writeFile(a.p('hello.txt'), 'hello world\n')
  await fs.writeFile(a.p('empty'), '')
  await fs.mkdir(a.p('empty dir'))
  await fs.mkdir(a.p('dir/sub'), { recursive: true })
  await fs.writeFile(a.p('dir/sub/ünïcødé ✓ name.txt'), 'utf8 content ✓')
  await b.waitForContent('hello.txt', 'hello world\n')
  await c.waitForContent('dir/sub/ünïcødé ✓ name.txt', 'utf8 content ✓')
  t.ok((await fs.stat(c.p('empty dir'))).isDirectory(), 'empty directory replicated')
  t.is((await fs.stat(c.p('empty'))).size, 0, 'empty file replicated')

  // write at an offset on B, append on C
  const fh = await fs.open(b.p('hello.txt'), 'r+')
  await fh.write('HELLO', 0)
  await fh.close()
  await c.waitForContent('hello.txt', 'HELLO world\n')
  await fs.appendFile(c.p('hello.txt'), 'appended\n')
  await a.waitForContent('hello.txt', 'HELLO world\nappended\n')

  // truncate: shrink and grow
  await fs.truncate(a.p('hello.txt'), 5)
  await b.waitForContent('hello.txt', 'HELLO')
  await fs.truncate(b.p('hello.txt'), 8)
  await c.waitForContent('hello.txt', Buffer.concat([Buffer.from('HELLO'), Buffer.alloc(3)]))

  // a larger file spanning many blocks, with a write in the middle
  const big = randomBytes(3 * 1024 * 1024 + 123)
  await fs.writeFile(a.p('big.bin'), big)
  await c.waitForContent('big.bin', big)
  const patch = Buffer.from('patched in the middle')
  const fh2 = await fs.open(c.p('big.bin'), 'r+')
  await fh2.write(patch, 0, patch.length, 1000000)
  await fh2.close()
  patch.copy(big, 1000000)
  await a.waitForContent('big.bin', big)

  // chmod, utimens, symlink
  await fs.chmod(a.p('hello.txt'), 0o640)
  // atime differs on purpose: fuse-native, unpatched, stores the atime as the mtime
  await fs.utimes(a.p('empty'), new Date('2001-01-01T00:00:00Z'), new Date('2020-01-02T03:04:05Z'))
  await fs.symlink('hello.txt', a.p('link'))
  await waitFor(async () => ((await fs.stat(b.p('hello.txt'))).mode & 0o777) === 0o640, { message: 'chmod on B' })
  await waitFor(async () => (await fs.stat(c.p('empty'))).mtime.getTime() === new Date('2020-01-02T03:04:05Z').getTime(), { message: 'mtime on C' })
  await waitFor(async () => (await fs.readlink(c.p('link'))) === 'hello.txt', { message: 'symlink on C' })

  // rename a file, over an existing file, and a whole directory
  await fs.writeFile(b.p('other.txt'), 'other')
  await a.waitForContent('other.txt', 'other')
  await fs.rename(a.p('other.txt'), a.p('renamed.txt'))
  await c.waitForContent('renamed.txt', 'other')
  await c.waitForMissing('other.txt')
  await fs.rename(c.p('renamed.txt'), c.p('hello.txt'))
  await b.waitForContent('hello.txt', 'other')
  await fs.rename(b.p('dir'), b.p('moved dir'))
  await a.waitForContent('moved dir/sub/ünïcødé ✓ name.txt', 'utf8 content ✓')
  await a.waitForMissing('dir')

  // unlink, rmdir (ENOTEMPTY when not empty)
  await t.exception(fs.rmdir(c.p('moved dir')), /ENOTEMPTY/, 'rmdir of a non-empty directory fails with ENOTEMPTY')
  await fs.unlink(c.p('moved dir/sub/ünïcødé ✓ name.txt'))
  await fs.rmdir(c.p('moved dir/sub'))
  await fs.rmdir(c.p('moved dir'))
  await a.waitForMissing('moved dir')
  await fs.unlink(a.p('big.bin'))
  await b.waitForMissing('big.bin')

  const listing = await converge([a, b, c])
  t.ok(listing.includes('./empty dir d'), 'all devices agree on the final tree')
})

test('cp -r, rsync -a, tar x and git work inside the mount', { timeout: 300000 }, async (t) => {
  const { bootstrap, secret, devices: [a, b] } = await folderWith(t, ['A', 'B'])
  const src = a.dir + '/src'
  await sh(`mkdir -p ${src}/x/y && for i in $(seq 1 20); do head -c $((i * 3000)) /dev/urandom > ${src}/x/f$i; done && echo hi > ${src}/x/y/z && ln -s f1 ${src}/x/l && chmod 600 ${src}/x/f2`)

  let r = await sh(`cp -r ${src}/x ${a.mnt}/cp`)
  t.is(r.code, 0, 'cp -r ' + r.stderr)
  r = await sh(`rsync -a ${src}/x/ ${a.mnt}/rsync/`)
  t.is(r.code, 0, 'rsync -a ' + r.stderr)
  r = await sh(`tar -C ${src} -cf ${a.dir}/x.tar x && mkdir ${a.mnt}/tar && tar -C ${a.mnt}/tar -xf ${a.dir}/x.tar`)
  t.is(r.code, 0, 'tar x ' + r.stderr)
  r = await sh(`cd ${a.mnt} && mkdir repo && cd repo && git init -q && git config user.email t@t && git config user.name t && echo one > f && git add f && git commit -qm one && echo two >> f && git commit -qam two && git log --oneline | wc -l`)
  t.is(r.code, 0, 'git init and commit ' + r.stderr)
  t.is(r.stdout.trim(), '2', 'two commits')

  for (const dir of ['cp', 'rsync', 'tar/x']) {
    await waitFor(async () => (await sh(`diff -r ${src}/x ${b.mnt}/${dir}`)).code === 0, { timeout: 60000, message: `${dir} on B` })
  }
  t.pass('copies arrive intact on B')
  const perms = await sh(`stat -c %a ${b.mnt}/rsync/f2`)
  t.is(perms.stdout.trim(), '600', 'rsync -a keeps the mode')
  await waitFor(async () => (await sh(`cd ${b.mnt}/repo && git log --oneline | wc -l && git status --porcelain`)).stdout.trim() === '2', { timeout: 60000, message: 'git repo on B' })
  r = await sh(`cd ${b.mnt}/repo && git fsck --no-progress 2>&1; echo three >> f && git commit -qam three && git log --oneline | wc -l`)
  t.is(r.stdout.trim().split('\n').pop(), '3', 'B can commit on the synced repository')
})

test('a rename of a directory of 600 files reaches the other device whole, also after a restart', { timeout: 300000 }, async (t) => {
  const { secret, devices: [a, b] } = await folderWith(t, ['A', 'B'])
  const N = 600 // more entries than one log record holds: the rename spans several
  await a.sh(`mkdir before && for i in $(seq 1 ${N}); do echo "file $i" > before/f$i; done`)
  const count = async (d, dir) => Number((await d.sh(`find ${dir} -type f 2>/dev/null | wc -l`)).stdout.trim())
  await waitFor(async () => (await count(b, 'before')) === N, { timeout: 60000, message: `the ${N} files on B` })
  await fs.rename(a.p('before'), a.p('after'))
  await waitFor(async () => (await count(b, 'after')) === N, { timeout: 60000, message: 'the renamed directory on B' })
  t.is(await count(b, 'before'), 0, 'nothing is left under the old name on B')
  t.is((await fs.readFile(b.p(`after/f${N}`), 'utf8')), `file ${N}\n`, 'the last file has its bytes on B')

  await b.stop()
  await a.stop()
  await b.mount(secret) // alone: B rebuilds its view from the logs on its disk
  t.is(await count(b, 'after'), N, 'after a restart B lists every file under the new name')
  t.is(await count(b, 'before'), 0, 'and none under the old one')
})

// The kernel keeps names and stats for a minute (src/fs/kernel-cache.ts): what a peer
// changes must reach B's kernel at once, well within that minute.
test("a peer's changes reach the names and stats that the kernel keeps", { timeout: 180000 }, async (t) => {
  const { devices: [a, b] } = await folderWith(t, ['A', 'B'])
  await a.sh('mkdir -p d/sub && echo one > d/f && echo two > d/sub/g && echo three > h && echo four > x && echo five > open.txt')
  await b.waitForContent('open.txt', 'five\n')
  await b.sh('ls -lR . > /dev/null && stat d/f d/sub/g h x open.txt > /dev/null') // the kernel now keeps them
  const held = await fs.open(b.p('open.txt'), 'r')
  t.teardown(() => held.close().catch(() => {}))

  await a.sh('echo "one, longer now" > d/f && chmod 600 h && rm d/sub/g && rm x && mkdir x && echo "five, longer" > open.txt && mv d moved')
  const soon = 10000
  await waitFor(async () => (await fs.stat(b.p('moved/f'))).size === 16, { timeout: soon, message: 'the new size of d/f, moved, on B' })
  await b.waitForMissing('d', soon)
  await b.waitForMissing('moved/sub/g', soon)
  await waitFor(async () => ((await fs.stat(b.p('h'))).mode & 0o777) === 0o600, { timeout: soon, message: 'the chmod of h on B' })
  await waitFor(async () => (await fs.stat(b.p('x'))).isDirectory(), { timeout: soon, message: 'x, now a directory, on B' })
  await waitFor(async () => (await held.stat()).size === 13, { timeout: soon, message: 'the new size through a handle B held open' })
  t.is(await fs.readFile(b.p('moved/f'), 'utf8'), 'one, longer now\n', 'B reads the new bytes')
  t.is(await fs.readFile(b.p('open.txt'), 'utf8'), 'five, longer\n', 'and those of the file it held open, opened again')

  // A directory made here stays a working directory: a change to the name during the mkdir
  // (its own entry) must not make the kernel drop the directory in use.
  const made = await b.sh('mkdir -p made/here && cd made/here && sleep 0.5 && pwd -P && echo six > f')
  t.is(made.code, 0, 'a directory just made is still a working directory ' + made.stderr)
  await a.waitForContent('made/here/f', 'six\n', soon)
})
