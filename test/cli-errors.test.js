'use strict'
// Bad input to the command line gets one clear line on stderr and a non-zero exit;
// nothing is mounted and nothing is deleted.
const test = require('brittle')
const path = require('path')
const fs = require('fs').promises
const { ROOT, BIN, startTestnet, Device, newSecret, exec, sh, waitFor } = require('./helpers')

/** Mountpoints in this process's mount namespace. */
async function mountpoints () {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8')
  return info.split('\n').map((l) => (l.split(' ')[4] || '').replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))))
}

async function isMounted (dir) {
  return (await mountpoints()).includes(dir)
}

async function exists (p) {
  try { await fs.lstat(p); return true } catch { return false }
}

/** Asserts a clean failure: exit code, one `tsyncfs: ` line on stderr matching `pattern`. */
function failsClearly (t, res, { code, pattern }, label) {
  if (code === undefined) t.not(res.code, 0, `${label}: non-zero exit`)
  else t.is(res.code, code, `${label}: exit ${code}`)
  const lines = res.stderr.trim().split('\n')
  t.is(lines.length, 1, `${label}: one line on stderr (${JSON.stringify(res.stderr.trim())})`)
  t.ok(lines[0].startsWith('tsyncfs: '), `${label}: the line starts with "tsyncfs: "`)
  if (pattern) t.ok(pattern.test(lines[0]), `${label}: says what is wrong (${lines[0]})`)
  t.ok(!/\n\s+at |Error:/.test(res.stderr), `${label}: no stack trace`)
}

/** Runs a bash script inside a private mount namespace (unshare -m), with `env`. */
function inNamespace (script, env) {
  return exec('unshare', ['-m', '--propagation', 'private', 'bash', '-c', script], { env, cwd: ROOT })
}

const q = (s) => `'${s.replace(/'/g, "'\\''")}'`

test('bad secrets are refused with exit 2 before anything is created', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')
  const secret = await newSecret()
  t.ok(/^tsrw-[a-z2-7]+$/.test(secret), 'tsyncfs new prints a read-write secret')

  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  const i = 20
  const typo = secret.slice(0, i) + alphabet[(alphabet.indexOf(secret[i]) + 7) % 32] + secret.slice(i + 1)
  const secretFile = path.join(a.dir, 'secret.txt')
  await fs.writeFile(secretFile, typo + '\n')
  const encrypted = JSON.parse((await a.cli(['secrets', secret, '--json'])).stdout).encrypted

  const cases = [
    ['malformed secret', 'tsrw-abc', 2, /malformed|length/],
    ['truncated secret', secret.slice(0, -4), 2, /malformed|cut short|length/],
    ['one character changed', typo, 2, /checksum/],
    ['not a secret, not a file', 'hello-world', 2, /not a tsyncfs secret/],
    ['a secret file with a typo', secretFile, 2, /checksum/],
    ['an encrypted secret', encrypted, 2, /encrypted/]
  ]
  for (const [label, arg, code, pattern] of cases) {
    const res = await a.cli(['mount', arg, a.mnt, '--data-dir', a.dataDir])
    failsClearly(t, res, { code, pattern }, label)
    t.is(res.stdout, '', `${label}: nothing on stdout`)
    t.absent(await isMounted(a.mnt), `${label}: nothing mounted`)
    t.absent(await exists(a.dataDir), `${label}: no data dir created`)
  }
  t.alike(await fs.readdir(a.mnt), [], 'the mountpoint is still there and empty')
  t.is(await fs.readFile(secretFile, 'utf8'), typo + '\n', 'the secret file is untouched')

  const res = await a.cli(['secrets', typo])
  failsClearly(t, res, { code: 2, pattern: /checksum/ }, 'secrets of a mistyped secret')
})

test('bad mountpoints are refused and left alone', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')
  const secret = await newSecret()

  const missing = path.join(a.dir, 'missing')
  let res = await a.cli(['mount', secret, missing, '--data-dir', a.dataDir])
  failsClearly(t, res, { pattern: /does not exist/ }, 'missing mountpoint')
  t.absent(await exists(missing), 'the missing mountpoint was not created')

  const file = path.join(a.dir, 'plainfile')
  await fs.writeFile(file, 'precious')
  res = await a.cli(['mount', secret, file, '--data-dir', a.dataDir])
  failsClearly(t, res, { pattern: /not a directory/ }, 'mountpoint is a file')
  t.is(await fs.readFile(file, 'utf8'), 'precious', 'the file is untouched')

  await fs.writeFile(a.p('keep.txt'), 'keep me')
  await fs.mkdir(a.p('keepdir'))
  res = await a.cli(['mount', secret, a.mnt, '--data-dir', a.dataDir])
  failsClearly(t, res, { pattern: /not empty/ }, 'mountpoint not empty')
  t.absent(await isMounted(a.mnt), 'nothing mounted on the non-empty mountpoint')
  t.is(await fs.readFile(a.p('keep.txt'), 'utf8'), 'keep me', 'its file is untouched')
  t.alike((await fs.readdir(a.mnt)).sort(), ['keep.txt', 'keepdir'], 'its entries are all still there')
  t.ok(!(await mountpoints()).some((m) => m.startsWith(a.dir)), 'nothing of this device is mounted anywhere')
})

test('a mountpoint or folder that is already mounted is refused', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  const b = new Device(t, bootstrap, 'B')
  await a.mount(secret)
  await fs.writeFile(a.p('a.txt'), 'from A')
  const pidA = a.pid()
  t.ok(pidA, 'A has a daemon')

  // The same folder with another data dir on A's mountpoint.
  let res = await b.cli(['mount', secret, a.mnt, '--data-dir', b.dataDir])
  failsClearly(t, res, { pattern: /already mounted/ }, 'same mountpoint, other data dir')
  // Another folder on A's mountpoint.
  res = await b.cli(['mount', await newSecret(), a.mnt, '--data-dir', b.dataDir])
  failsClearly(t, res, { pattern: /already mounted/ }, 'same mountpoint, other folder')
  // The same folder and data dir on the same mountpoint again.
  res = await a.cli(['mount', secret, a.mnt, '--data-dir', a.dataDir])
  failsClearly(t, res, { pattern: /already mounted/ }, 'the same mount twice')

  // The same folder from the same data dir on another mountpoint.
  res = await b.cli(['mount', secret, b.mnt, '--data-dir', a.dataDir])
  failsClearly(t, res, { pattern: /already (mounted|in use)/ }, 'one folder and data dir on a second mountpoint')
  t.absent(await isMounted(b.mnt), 'nothing mounted on the second mountpoint')
  t.alike(await fs.readdir(b.mnt), [], 'the second mountpoint is still empty')
  const status = await b.cli(['status', b.mnt])
  t.not(status.code, 0, 'status of the refused mountpoint fails')

  // A is unharmed: same daemon, its data readable and writable.
  t.is(a.pid(), pidA, 'A keeps its daemon')
  t.ok(await isMounted(a.mnt), 'A is still mounted')
  t.is(await fs.readFile(a.p('a.txt'), 'utf8'), 'from A', 'A still reads its file')
  await fs.writeFile(a.p('a2.txt'), 'still writable')
  t.is(await fs.readFile(a.p('a2.txt'), 'utf8'), 'still writable', 'A still writes')
  t.is((await a.status()).pid, pidA, 'A answers status')

  // Once A is unmounted, its data dir mounts elsewhere with everything in it.
  await a.unmount()
  t.absent(await isMounted(a.mnt), 'A unmounted')
  res = await b.cli(['mount', secret, b.mnt, '--data-dir', a.dataDir])
  t.is(res.code, 0, 'A\'s data dir mounts on the second mountpoint now ' + res.stderr)
  t.is(await fs.readFile(b.p('a.txt'), 'utf8'), 'from A', 'nothing was lost')
  t.is(await fs.readFile(b.p('a2.txt'), 'utf8'), 'still writable')
})

test('no FUSE: without /dev/fuse or libfuse, mount fails clearly', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')
  const secret = await newSecret()
  const mountCmd = `node ${q(BIN)} mount ${q(secret)} ${q(a.mnt)} --data-dir ${q(a.dataDir)}`
  // After the CLI, report whether anything got mounted inside the namespace.
  const after = `rc=$?; if grep -qF ' ${a.mnt} ' /proc/self/mountinfo; then echo MOUNTED; fi; exit $rc`

  let res = await inNamespace(`mount -t tmpfs none /dev && ${mountCmd}; ${after}`, a.env)
  failsClearly(t, res, { pattern: /FUSE is not usable.*\/dev\/fuse/ }, 'no /dev/fuse')
  t.absent(res.stdout.includes('MOUNTED'), 'nothing mounted (inside the namespace)')

  const lib = (await sh('ldconfig -p | grep -m1 "libfuse.so.2 " | sed "s/.*=> //"')).stdout.trim()
  t.ok(lib, 'libfuse.so.2 found: ' + lib)
  const empty = path.join(a.dir, 'empty.so')
  await fs.writeFile(empty, '')
  res = await inNamespace(`mount --bind ${q(empty)} ${q(lib)} && ${mountCmd}; ${after}`, a.env)
  failsClearly(t, res, { pattern: /FUSE is not usable.*libfuse/ }, 'no libfuse')
  t.absent(res.stdout.includes('MOUNTED'), 'nothing mounted (inside the namespace)')
  // Commands that need no FUSE still work without libfuse.
  res = await inNamespace(`mount --bind ${q(empty)} ${q(lib)} && node ${q(BIN)} new && node ${q(BIN)} secrets ${q(secret)} && node ${q(BIN)} --help >/dev/null`, a.env)
  t.is(res.code, 0, 'new, secrets and --help work without libfuse ' + res.stderr)
  t.ok(/^tsrw-/.test(res.stdout), 'new prints a secret without libfuse')

  t.absent(await isMounted(a.mnt), 'nothing mounted outside')
  t.absent(await exists(a.dataDir), 'no data dir created')
  t.ok(await exists(lib), 'the real libfuse is untouched')
  t.alike(await fs.readdir(a.mnt), [], 'the mountpoint is still empty')
})

test('an unwritable data dir is refused', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')
  const secret = await newSecret()
  const blocker = path.join(a.dir, 'regular-file')
  await fs.writeFile(blocker, 'not a dir')

  let res = await a.cli(['mount', secret, a.mnt, '--data-dir', path.join(blocker, 'data')])
  failsClearly(t, res, { pattern: /data dir .* not writable/ }, 'data dir below a regular file')
  t.absent(await isMounted(a.mnt), 'nothing mounted')
  t.is(await fs.readFile(blocker, 'utf8'), 'not a dir', 'the file in the way is untouched')

  // A read-only bind mount of the data dir (root ignores permission bits, not ro mounts).
  const roDir = path.join(a.dir, 'ro-data')
  await fs.mkdir(roDir)
  await fs.writeFile(path.join(roDir, 'existing'), 'old')
  const mountCmd = `node ${q(BIN)} mount ${q(secret)} ${q(a.mnt)} --data-dir ${q(roDir)}`
  res = await inNamespace(`mount --bind ${q(roDir)} ${q(roDir)} && mount -o remount,bind,ro ${q(roDir)} && ${mountCmd}; rc=$?; if grep -qF ' ${a.mnt} ' /proc/self/mountinfo; then echo MOUNTED; fi; exit $rc`, a.env)
  failsClearly(t, res, { pattern: /data dir .* not writable.*EROFS/ }, 'read-only data dir')
  t.absent(res.stdout.includes('MOUNTED'), 'nothing mounted (inside the namespace)')
  t.alike(await fs.readdir(roDir), ['existing'], 'the data dir is unchanged')
  t.absent(await isMounted(a.mnt), 'nothing mounted outside')
  t.alike(await fs.readdir(a.mnt), [], 'the mountpoint is still empty')
})

test('unknown options and commands exit 2; --help of every command exits 0', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')
  const secret = await newSecret()

  let res = await a.cli(['mount', secret, a.mnt, '--data-dir', a.dataDir, '--bogus'])
  failsClearly(t, res, { code: 2, pattern: /unknown option --bogus/ }, 'mount --bogus')
  t.absent(await isMounted(a.mnt), 'nothing mounted')
  t.absent(await exists(a.dataDir), 'no data dir created')
  res = await a.cli(['mount', secret, a.mnt, '--data-dir'])
  failsClearly(t, res, { code: 2, pattern: /--data-dir needs a value/ }, 'an option without its value')
  res = await a.cli(['mount', secret])
  failsClearly(t, res, { code: 2, pattern: /usage/ }, 'mount without a mountpoint')
  res = await a.cli(['mount', secret, a.mnt, '--read-timeout', 'soon'])
  failsClearly(t, res, { code: 2, pattern: /read-timeout/ }, 'a bad --read-timeout')
  res = await a.cli(['mount', secret, a.mnt, '--bootstrap', 'not a host'])
  failsClearly(t, res, { code: 2, pattern: /bootstrap/ }, 'a bad --bootstrap')
  t.absent(await isMounted(a.mnt), 'still nothing mounted')
  for (const cmd of [['new', '--bogus'], ['status', '--verbose'], ['unmount', a.mnt, '--force'], ['secrets', secret, '--yaml'], ['bootstrap', '--what']]) {
    res = await a.cli(cmd)
    failsClearly(t, res, { code: 2, pattern: /unknown option/ }, cmd.filter((c) => c !== secret).join(' '))
  }
  res = await a.cli(['frobnicate'])
  failsClearly(t, res, { code: 2, pattern: /unknown command "frobnicate"/ }, 'an unknown command')

  for (const cmd of ['new', 'mount', 'status', 'unmount', 'secrets', 'bootstrap']) {
    res = await a.cli([cmd, '--help'], { timeout: 20000 })
    t.is(res.code, 0, `${cmd} --help exits 0`)
    t.ok(res.stdout.startsWith(`tsyncfs ${cmd}`), `${cmd} --help prints its usage`)
    t.is(res.stderr, '', `${cmd} --help prints nothing on stderr`)
  }
  res = await a.cli(['--help'])
  t.is(res.code, 0, 'tsyncfs --help exits 0')
  for (const cmd of ['new', 'mount', 'status', 'unmount', 'secrets', 'bootstrap']) t.ok(res.stdout.includes(`tsyncfs ${cmd}`), `--help lists ${cmd}`)
  t.absent(await isMounted(a.mnt), 'no --help mounted anything')
})

test('unmount of something that is not a tsyncfs mount fails and leaves it alone', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')

  let res = await a.cli(['unmount', a.mnt])
  failsClearly(t, res, { pattern: /not a tsyncfs mount/ }, 'unmount of a plain directory')
  t.ok(await exists(a.mnt), 'the directory is still there')
  res = await a.cli(['unmount', path.join(a.dir, 'missing')])
  failsClearly(t, res, { pattern: /not a tsyncfs mount/ }, 'unmount of a missing directory')
  res = await a.cli(['unmount'])
  failsClearly(t, res, { code: 2, pattern: /usage/ }, 'unmount without a mountpoint')
  res = await a.cli(['status', a.mnt])
  failsClearly(t, res, { pattern: /not a tsyncfs mount/ }, 'status of a plain directory')

  // Another filesystem mounted there (a tmpfs, inside a private namespace) is not ours.
  const other = path.join(a.dir, 'other')
  await fs.mkdir(other)
  res = await inNamespace(`mount -t tmpfs none ${q(other)} && echo data > ${q(other)}/f && node ${q(BIN)} unmount ${q(other)}; rc=$?; ` +
    `if grep -qF ' ${other} ' /proc/self/mountinfo; then echo STILL-MOUNTED; fi; cat ${q(other)}/f; exit $rc`, a.env)
  failsClearly(t, res, { pattern: /not a tsyncfs mount/ }, 'unmount of a tmpfs')
  t.ok(res.stdout.includes('STILL-MOUNTED'), 'the tmpfs is still mounted')
  t.ok(res.stdout.includes('data'), 'its file is still readable')
})

test('a stale mount of a killed daemon is recovered by mount, or removed by unmount', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  await a.mount(secret)
  await fs.writeFile(a.p('before.txt'), 'written before the crash')

  const killAndWait = async () => {
    const pid = a.pid()
    t.ok(pid, 'the daemon is registered')
    process.kill(pid, 'SIGKILL')
    await waitFor(() => { try { process.kill(pid, 0); return false } catch { return true } }, { message: 'daemon to die' })
  }
  await killAndWait()
  try {
    await fs.stat(a.mnt)
    t.fail('stat of a dead mount succeeded')
  } catch (err) {
    t.is(err.code, 'ENOTCONN', 'stat of the dead mount fails with ENOTCONN')
  }
  let res = await a.cli(['status', a.mnt])
  failsClearly(t, res, {}, 'status of the dead mount')

  res = await a.cli(['mount', secret, a.mnt, '--data-dir', a.dataDir])
  t.is(res.code, 0, 'mount over the stale mount succeeds ' + res.stderr)
  t.ok((await fs.stat(a.mnt)).isDirectory(), 'the mount answers again')
  t.is(await fs.readFile(a.p('before.txt'), 'utf8'), 'written before the crash', 'what was written before the crash is there')
  await fs.writeFile(a.p('after.txt'), 'written after')
  t.is(await fs.readFile(a.p('after.txt'), 'utf8'), 'written after', 'the new mount writes')
  t.is((await a.status()).files, 2, 'status counts both files')
  t.is((await mountpoints()).filter((m) => m === a.mnt).length, 1, 'exactly one mount on the mountpoint (the stale one is gone)')

  // Killed again: this time `unmount` removes the dead mount.
  await killAndWait()
  res = await a.cli(['unmount', a.mnt])
  t.is(res.code, 0, 'unmount of the dead mount succeeds ' + res.stderr)
  t.absent(await isMounted(a.mnt), 'the dead mount is gone')
  t.alike(await fs.readdir(a.mnt), [], 'the mountpoint is a plain empty directory again')
})
