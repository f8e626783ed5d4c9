'use strict'
// Linux integration: fstab (mount -T, umount), the mount.fuse helper form, SIGTERM during a
// large write, a busy mount, two folders on one device, other users (allow_other, uid,
// gid, umask) and the packed npm tarball installed globally.
const test = require('brittle')
const fs = require('fs').promises
const path = require('path')
const crypto = require('crypto')
const { spawn } = require('child_process')
const { folderWith, startTestnet, Device, newSecret, waitFor, alive, exec, sh, ROOT, BIN, RUN_DIR } = require('./helpers')

const NOBODY = 65534
const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex')
const q = JSON.stringify
const WRITER = `
import os, sys
src = open(sys.argv[1], 'rb')
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
total = 0
while True:
    block = src.read(1 << 20)
    if not block:
        break
    try:
        total += os.write(fd, block)
    except OSError as err:
        print('error', err.strerror, flush=True)
        break
    print(total, flush=True)
`

/** A shell command run as the user nobody. */
function asNobody (cmd) {
  return sh(`setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups -- sh -c ${q(cmd)}`)
}

async function secretFile (d, secret) {
  const file = path.join(d.dir, 'secret')
  await fs.writeFile(file, secret + '\n', { mode: 0o600 })
  return file
}

async function isMounted (dir) {
  return (await sh(`findmnt -n ${q(dir)}`)).code === 0
}

test('fstab: mount -T and umount, with tsyncfs options and ignored mount(8)/systemd ones', { timeout: 300000 }, async (t) => {
  const { bootstrap, secret, devices: [a, b] } = await folderWith(t, ['A', 'B'], 1)
  const link = await sh('readlink -f /usr/local/bin/tsyncfs')
  t.is(link.stdout.trim(), BIN, 'mount.fuse finds this checkout\'s tsyncfs (scripts/setup links it)')

  const fstab = path.join(b.dir, 'fstab')
  const opts = `_netdev,nofail,noauto,x-systemd.automount,x-systemd.idle-timeout=60,data_dir=${b.dataDir},bootstrap=${bootstrap},bind=127.0.0.1,cache_size=64M,read_timeout=20`
  await fs.writeFile(fstab, `# a test fstab\n${await secretFile(b, secret)}  ${b.mnt}  fuse.tsyncfs  ${opts}  0  0\n`)
  const mounted = await sh(`mount -T ${q(fstab)} ${q(b.mnt)}`, { env: b.env })
  t.is(mounted.code, 0, `mount -T exits 0 (${mounted.stderr.trim()})`)
  t.ok((await sh(`findmnt -n -o FSTYPE ${q(b.mnt)}`)).stdout.includes('fuse.tsyncfs'), 'findmnt shows a fuse.tsyncfs mount')

  await fs.writeFile(a.p('from-a.txt'), 'written on A')
  await b.waitForContent('from-a.txt', 'written on A')
  t.pass('the fstab mount syncs over the bootstrap and bind given as options')
  const cache = JSON.parse((await b.cli(['cache', b.mnt, '--json'])).stdout)
  t.is(cache.limit, 64 * 1024 * 1024, 'cache_size=64M is the cache limit')
  const log = await sh(`cat ${q(b.dataDir)}/*/daemon.log`)
  t.ok(log.stdout.includes('mounted folder'), 'the daemon logs to daemon.log in data_dir')

  await fs.writeFile(b.p('from-b.txt'), 'written on B')
  const pid = b.pid()
  const unmounted = await sh(`umount ${q(b.mnt)}`)
  t.is(unmounted.code, 0, `umount exits 0 (${unmounted.stderr.trim()})`)
  await waitFor(() => !alive(pid), { timeout: 15000, message: 'the daemon to exit after umount' })
  t.absent(await isMounted(b.mnt), 'nothing is mounted any more')
  t.alike(await fs.readdir(b.mnt), [], 'the mountpoint is an empty dir again')

  t.is((await sh(`mount -T ${q(fstab)} ${q(b.mnt)}`, { env: b.env })).code, 0, 'mounts again from fstab')
  t.is(await fs.readFile(b.p('from-b.txt'), 'utf8'), 'written on B', 'and B\'s own file is there, from data_dir')
  await a.waitForContent('from-b.txt', 'written on B')
  t.pass('what B wrote before umount reaches A')
  t.is((await sh(`umount ${q(b.mnt)}`)).code, 0, 'umount again')
})

test('the mount.fuse form: tsyncfs SOURCE DIR -o OPTS; unknown options exit 2', { timeout: 300000 }, async (t) => {
  const { bootstrap, secret, devices: [a, b] } = await folderWith(t, ['A', 'B'], 1)
  await fs.writeFile(a.p('hello.txt'), 'hello')
  const source = await secretFile(b, secret)

  const bad = await b.cli([source, b.mnt, '-o', `data_dir=${b.dataDir},no_such_option=1`])
  t.is(bad.code, 2, 'an unknown -o key exits 2')
  t.ok(/unknown mount option "no_such_option"/.test(bad.stderr), `and names it (${bad.stderr.trim()})`)
  t.absent(await isMounted(b.mnt), 'and mounts nothing')

  const res = await b.cli([source, b.mnt, '-o', `rw,nodev,nosuid,noatime,_netdev,data_dir=${b.dataDir},bootstrap=${bootstrap},ro,umask=0027`])
  t.is(res.code, 0, `the helper form mounts (${res.stderr.trim()})`)
  await b.waitForContent('hello.txt', 'hello')
  const write = await sh(`echo x > ${q(b.p('new.txt'))}`)
  t.ok(/Read-only file system/.test(write.stderr), `-o ro makes writes fail with EROFS (${write.stderr.trim()})`)
  t.is((await fs.stat(b.p('hello.txt'))).mode & 0o777, 0o640, '-o umask=0027 hides the modes\' bits')
  await b.stop()
})

test('SIGTERM during a large write: what was fsynced and written is committed, the daemon exits 0', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  const source = path.join(a.dir, 'source.bin')
  await sh(`head -c ${256 * 1024 * 1024} /dev/urandom > ${q(source)}`)

  const daemon = spawn(process.execPath, [BIN, 'mount', secret, a.mnt, '--data-dir', a.dataDir, '--foreground'], { env: a.env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  daemon.stderr.on('data', (d) => { stderr += d })
  const exited = new Promise((resolve) => daemon.once('exit', (code, signal) => resolve({ code, signal })))
  t.teardown(() => { try { daemon.kill('SIGKILL') } catch {} })
  await waitFor(() => stderr.includes('mounted folder'), { timeout: 60000, message: 'the foreground daemon to mount' })

  const synced = (await fs.readFile(source)).subarray(0, 8 * 1024 * 1024)
  t.is((await sh(`head -c ${synced.length} ${q(source)} | dd of=${q(a.p('synced.bin'))} bs=1M conv=fsync status=none`)).code, 0, 'an fsynced file is written')

  // A writer that reports every byte count the kernel acknowledged (dd says nothing when
  // its close fails too).
  const writer = spawn('python3', ['-c', WRITER, source, a.p('big.bin')], { stdio: ['ignore', 'pipe', 'inherit'] })
  let reported = ''
  writer.stdout.on('data', (d) => { reported += d })
  const writerDone = new Promise((resolve) => writer.once('exit', resolve))
  await waitFor(async () => (await fs.stat(a.p('big.bin'))).size >= 32 * 1024 * 1024, { timeout: 60000, interval: 20, message: 'the large write to be under way' })
  daemon.kill('SIGTERM')
  const { code } = await exited
  await writerDone
  t.is(code, 0, 'the daemon exits 0 on SIGTERM')
  t.absent(await isMounted(a.mnt), 'the mount is released')
  t.alike(await fs.readdir(a.mnt), [], 'and the mountpoint is usable, not dead')
  const lines = reported.trim().split('\n')
  const copied = Number(lines.filter((l) => /^\d+$/.test(l)).pop() || -1)
  t.ok(copied >= 32 * 1024 * 1024 && copied < 256 * 1024 * 1024, `the writer had ${copied} bytes acknowledged, then: ${lines.pop()}`)

  await a.mount(secret)
  t.is(sha(await fs.readFile(a.p('synced.bin'))), sha(synced), 'the fsynced file is intact after the restart')
  const big = await fs.readFile(a.p('big.bin'))
  t.ok(big.length >= copied, `every acknowledged byte is there (${big.length} >= ${copied})`)
  const prefix = Buffer.alloc(big.length)
  const fh = await fs.open(source)
  await fh.read(prefix, 0, big.length, 0)
  await fh.close()
  t.ok(big.equals(prefix), 'and it is exactly the start of what was written')
  await a.stop()
})

test('a busy mount is refused with a hint; --lazy detaches it', { timeout: 300000 }, async (t) => {
  const { devices: [a] } = await folderWith(t, ['A'])
  await fs.writeFile(a.p('f.txt'), 'still here')
  const holder = spawn('bash', ['-c', 'sleep 120'], { cwd: a.mnt, stdio: 'ignore' })
  t.teardown(() => { try { holder.kill('SIGKILL') } catch {} })
  await waitFor(async () => (await fs.readlink(`/proc/${holder.pid}/cwd`)) === a.mnt, { message: 'a process to sit in the mount' })

  const busy = await a.cli(['unmount', a.mnt])
  t.not(busy.code, 0, 'unmount of a busy mount fails')
  t.ok(/busy/.test(busy.stderr) && /--lazy/.test(busy.stderr), `with a message naming --lazy (${busy.stderr.trim()})`)
  t.is(busy.stderr.trim().split('\n').length, 1, 'on one line')
  t.is(await fs.readFile(a.p('f.txt'), 'utf8'), 'still here', 'the mount still works')

  const pid = a.pid()
  const lazy = await a.cli(['unmount', '--lazy', a.mnt])
  t.is(lazy.code, 0, `unmount --lazy succeeds (${lazy.stderr.trim()})`)
  await waitFor(() => !alive(pid), { timeout: 30000, message: 'the daemon to exit' })
  t.absent(await isMounted(a.mnt), 'the mount is detached')
  holder.kill('SIGKILL')
})

test('two folders at once on one device; a second mount of one folder is refused', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const [one, two] = [await newSecret(), await newSecret()]
  const a = new Device(t, bootstrap, 'A')
  const a2 = new Device(t, bootstrap, 'A2')
  a2.dataDir = a.dataDir // the same device: one data dir, one runtime dir
  a2.env = a.env
  await a.mount(one)
  await a2.mount(two)
  await fs.writeFile(a.p('one.txt'), 'in folder one')
  await fs.writeFile(a2.p('two.txt'), 'in folder two')
  t.alike(await fs.readdir(a.mnt), ['one.txt'], 'folder one holds only its file')
  t.alike(await fs.readdir(a2.mnt), ['two.txt'], 'folder two holds only its file')
  const all = JSON.parse((await a.cli(['status', '--json'])).stdout)
  t.alike(all.map((s) => s.mountpoint).sort(), [a.mnt, a2.mnt].sort(), 'status lists both mounts')

  const third = path.join(a.dir, 'third')
  await fs.mkdir(third)
  const again = await a.cli(['mount', one, third, '--data-dir', a.dataDir])
  t.not(again.code, 0, 'mounting folder one a second time fails')
  t.ok(/already mounted/.test(again.stderr) && again.stderr.includes(a.mnt), `and says where it is mounted (${again.stderr.trim()})`)
  t.absent(await isMounted(third), 'nothing is mounted there')
  await a2.stop()
  await a.stop()
})

test('other users: allow_other, uid, gid and umask decide what they may do', { timeout: 300000 }, async (t) => {
  const { secret, devices: [root, shared, privateMount] } = await folderWith(t, ['root', 'shared', 'private'], 0)
  await fs.chmod(RUN_DIR, 0o711) // nobody must be able to reach the mountpoints
  for (const d of [root, shared, privateMount]) await fs.chmod(d.dir, 0o711)
  await root.mount(secret, ['--allow-other', '--umask', '027'])
  await shared.mount(secret, ['--allow-other', '--uid', String(NOBODY), '--gid', String(NOBODY)])
  await privateMount.mount(secret)

  await fs.writeFile(root.p('notes.txt'), 'root\'s notes')
  await fs.mkdir(root.p('drop'))
  await fs.chmod(root.p('drop'), 0o777)
  await shared.waitForContent('notes.txt', 'root\'s notes')

  const denied = await asNobody(`cat ${q(root.p('notes.txt'))}`)
  t.ok(/Permission denied/.test(denied.stderr), `umask 027 hides the file from others (${denied.stderr.trim()})`)
  const dropDenied = await asNobody(`echo x > ${q(root.p('drop/x.txt'))}`)
  t.ok(/Permission denied/.test(dropDenied.stderr), 'and a 0777 dir shows as 0750: others cannot write in it')
  t.is((await sh(`stat -c %a ${q(root.p('drop'))}`)).stdout.trim(), '750', 'modes are shown with the umask applied')

  const owned = await sh(`stat -c %u:%g ${q(shared.p('notes.txt'))}`)
  t.is(owned.stdout.trim(), `${NOBODY}:${NOBODY}`, '--uid/--gid: every file is shown as nobody\'s')
  const read = await asNobody(`cat ${q(shared.p('notes.txt'))}`)
  t.is(read.stdout, 'root\'s notes', 'nobody reads through the mount that names it the owner')
  const wrote = await asNobody(`echo "by nobody" > ${q(shared.p('drop/by-nobody.txt'))}`)
  t.is(wrote.code, 0, `and writes (${wrote.stderr.trim()})`)
  await root.waitForContent('drop/by-nobody.txt', 'by nobody\n')
  t.pass('what nobody wrote synced to the other mount')

  const noAllow = await asNobody(`ls ${q(privateMount.mnt)}`)
  t.ok(/Permission denied/.test(noAllow.stderr), `without allow_other others cannot enter the mount (${noAllow.stderr.trim()})`)
})

test('npm pack, then npm install -g of the tarball gives a working tsyncfs', { timeout: 600000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')
  const dest = path.join(a.dir, 'pack')
  const prefix = path.join(a.dir, 'prefix')
  await fs.mkdir(dest)
  const packed = await exec('npm', ['pack', '--pack-destination', dest, '--silent'], { cwd: ROOT, timeout: 300000 })
  t.is(packed.code, 0, `npm pack (${packed.stderr.trim().split('\n').pop()})`)
  const tarball = path.join(dest, packed.stdout.trim().split('\n').pop())
  // npm 11 runs no install scripts of a global install unless allowed (README, "Installing").
  const installed = await exec('npm', ['install', '-g', '--prefix', prefix, `--allow-scripts=file:${tarball},fuse-native`, '--no-audit', '--no-fund', tarball], { timeout: 400000 })
  t.is(installed.code, 0, `npm install -g of the tarball (${installed.stderr.trim().split('\n').pop()})`)

  const bin = path.join(prefix, 'bin', 'tsyncfs')
  const secret = (await exec(bin, ['new'], { env: a.env })).stdout.trim()
  t.ok(/^tsrw-/.test(secret), 'the installed tsyncfs prints a secret')
  const mounted = await exec(bin, ['mount', secret, a.mnt, '--data-dir', a.dataDir], { env: a.env })
  t.is(mounted.code, 0, `and mounts (${mounted.stderr.trim()})`)
  await fs.writeFile(a.p('x.txt'), 'x')
  // atime in 2030, mtime in 2001: the unpatched addon would store the atime as the mtime.
  await sh(`python3 -c 'import os, sys; os.utime(sys.argv[1], (1900000000, 981173106))' ${q(a.p('x.txt'))}`)
  t.is((await fs.stat(a.p('x.txt'))).mtime.toISOString().slice(0, 4), '2001', 'with the patched fuse-native (utimens sets the mtime)')
  const log = await sh(`cat ${q(a.dataDir)}/*/daemon.log`)
  t.absent(/installed without its patch/.test(log.stdout), 'and no warning about an unpatched fuse-native')
  t.is((await exec(bin, ['unmount', a.mnt], { env: a.env })).code, 0, 'and unmounts')
})
