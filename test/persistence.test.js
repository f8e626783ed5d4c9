'use strict'
// What a device wrote survives the daemon: a clean unmount, a SIGTERM (which commits
// files still open for writing) and a SIGKILL (which leaves a dead mountpoint that the
// next mount recovers). Every remount here is offline: no other device is running.
const test = require('brittle')
const fs = require('fs').promises
const { spawn } = require('child_process')
const crypto = require('crypto')
const { startTestnet, Device, newSecret, waitFor, randomBytes } = require('./helpers')

const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex')

/** Type, mode, size, mtime and content (hash) or link target of everything below the
 *  mount (not the root itself: its time is the mount's). */
async function snapshot (d) {
  const out = {}
  const walk = async (rel) => {
    for (const name of (await fs.readdir(rel ? d.p(rel) : d.mnt)).sort()) {
      const p = rel ? rel + '/' + name : name
      const st = await fs.lstat(d.p(p))
      const info = { mode: (st.mode & 0o170000).toString(8) + ':' + (st.mode & 0o7777).toString(8), size: st.size, mtime: st.mtimeMs }
      if (st.isDirectory()) {
        out[p] = { ...info, type: 'dir' }
        await walk(p)
      } else if (st.isSymbolicLink()) {
        out[p] = { ...info, type: 'symlink', target: await fs.readlink(d.p(p)) }
      } else {
        out[p] = { ...info, type: 'file', sha: sha(await fs.readFile(d.p(p))) }
      }
    }
  }
  await walk('')
  return out
}

function isAlive (pid) {
  try { process.kill(pid, 0); return true } catch (err) { return err.code === 'EPERM' }
}

async function waitForExit (pid, message) {
  await waitFor(() => !isAlive(pid), { timeout: 60000, message })
}

/** The error code of stat on the mountpoint, or null when it works. */
async function statError (d) {
  try { await fs.stat(d.mnt); return null } catch (err) { return err.code }
}

async function alone (t, d) {
  const st = await d.status()
  t.is(st.peers.length, 0, `${d.name} runs alone (no peers)`)
}

test('unmount and mount again: files, dirs, symlinks, modes and mtimes are still there, offline', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  await a.mount(secret)

  const big = randomBytes(3 * 1024 * 1024 + 777)
  await fs.mkdir(a.p('dir/sub/deeper'), { recursive: true })
  await fs.mkdir(a.p('empty dir'))
  await fs.mkdir(a.p('private'), { mode: 0o700 })
  await fs.writeFile(a.p('hello.txt'), 'hello\n')
  await fs.writeFile(a.p('empty'), '')
  await fs.writeFile(a.p('big.bin'), big)
  await fs.writeFile(a.p('dir/sub/deeper/ünïcødé ✓.txt'), 'deep ✓\n')
  await fs.writeFile(a.p('private/secret'), 'shh', { mode: 0o600 })
  await fs.writeFile(a.p('run.sh'), '#!/bin/sh\necho hi\n')
  await fs.chmod(a.p('run.sh'), 0o755)
  await fs.chmod(a.p('private'), 0o700)
  await fs.chmod(a.p('private/secret'), 0o600)
  await fs.symlink('hello.txt', a.p('link'))
  await fs.symlink('../../hello.txt', a.p('dir/sub/up-link'))
  await fs.symlink('does/not/exist', a.p('dangling'))
  // an edited file: the latest version must come back, not the first
  await fs.writeFile(a.p('edited.txt'), 'first version')
  const fh = await fs.open(a.p('edited.txt'), 'r+')
  await fh.write('FIRST', 0)
  await fh.close()
  await fs.appendFile(a.p('edited.txt'), ' + appended')
  await fs.truncate(a.p('hello.txt'), 3)
  // a deleted file and a renamed one must stay that way
  await fs.writeFile(a.p('gone.txt'), 'deleted')
  await fs.unlink(a.p('gone.txt'))
  await fs.writeFile(a.p('old-name'), 'renamed')
  await fs.rename(a.p('old-name'), a.p('dir/new-name'))
  const old = new Date('2001-02-03T04:05:06Z')
  await fs.utimes(a.p('empty'), new Date('1999-09-09T09:09:09Z'), old)
  await fs.utimes(a.p('dir/sub'), new Date('1999-09-09T09:09:09Z'), new Date('2010-10-10T10:10:10Z'))

  const before = await snapshot(a)
  t.is(before['edited.txt'].sha, sha('FIRST version + appended'), 'edits applied before the unmount')
  t.is(before.empty.mtime, old.getTime(), 'utimes applied before the unmount')
  t.ok(!('gone.txt' in before) && !('old-name' in before) && 'dir/new-name' in before, 'delete and rename applied')
  // The snapshot really holds what is compared below.
  t.is(before['dir/sub'].mtime, new Date('2010-10-10T10:10:10Z').getTime(), 'a directory mtime is in the snapshot')
  t.alike([before.private.mode, before['private/secret'].mode, before['run.sh'].mode, before.link.mode.split(':')[0]],
    ['40000:700', '100000:600', '100000:755', '120000'], 'modes and types are in the snapshot')
  t.is(before['dir/sub/up-link'].target, '../../hello.txt', 'symlink targets are in the snapshot')
  t.is(before['big.bin'].size, big.length, 'sizes are in the snapshot')

  await a.unmount()
  t.is(await statError(a), null, 'the mountpoint is a plain directory again')
  t.alike(await fs.readdir(a.mnt), [], 'nothing is left in the mountpoint')

  await a.mount(secret)
  await alone(t, a)
  const after = await snapshot(a)
  t.alike(after, before, 'the same paths with the same types, modes, sizes, mtimes, contents and targets')
  t.ok((await fs.readFile(a.p('big.bin'))).equals(big), 'the big file reads back whole')
  t.is(await fs.readFile(a.p('dir/sub/deeper/ünïcødé ✓.txt'), 'utf8'), 'deep ✓\n', 'a deep file reads back')
  t.is(await fs.readFile(a.p('hello.txt'), 'utf8'), 'hel', 'the truncated file reads back')
  t.is(await fs.readFile(a.p('link'), 'utf8'), 'hel', 'the symlink resolves')
  t.is(await fs.readlink(a.p('dangling')), 'does/not/exist', 'a dangling symlink is kept')

  // It keeps working after the remount, and a second round trip keeps that too.
  await fs.writeFile(a.p('after remount.txt'), 'written after the remount')
  await fs.appendFile(a.p('edited.txt'), ' + again')
  const before2 = await snapshot(a)
  await a.unmount()
  await a.mount(secret)
  await alone(t, a)
  t.alike(await snapshot(a), before2, 'a second unmount and mount keeps everything too')
  t.is(await fs.readFile(a.p('edited.txt'), 'utf8'), 'FIRST version + appended + again', 'an edit made after the first remount is kept')
  t.is(await fs.readFile(a.p('after remount.txt'), 'utf8'), 'written after the remount', 'a file made after the first remount is kept')
})

test('SIGTERM stops the daemon cleanly; after SIGKILL the next mount recovers the dead mountpoint', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  await a.mount(secret)

  const big = randomBytes(2 * 1024 * 1024 + 5)
  await fs.mkdir(a.p('d'))
  await fs.writeFile(a.p('d/one.txt'), 'one')
  await fs.writeFile(a.p('big.bin'), big)
  await fs.symlink('d/one.txt', a.p('l'))
  await fs.chmod(a.p('d/one.txt'), 0o640)
  const before = await snapshot(a)

  // SIGTERM: the daemon unmounts and exits by itself.
  const pid1 = a.pid()
  t.ok(pid1 && isAlive(pid1), 'the daemon runs')
  process.kill(pid1, 'SIGTERM')
  await waitForExit(pid1, 'the daemon to exit on SIGTERM')
  t.is(await statError(a), null, 'after SIGTERM the mountpoint is not left dead')
  t.alike(await fs.readdir(a.mnt), [], 'after SIGTERM the mountpoint is unmounted')

  await a.mount(secret)
  await alone(t, a)
  t.alike(await snapshot(a), before, 'everything is back after the SIGTERM')
  t.ok((await fs.readFile(a.p('big.bin'))).equals(big), 'the big file reads back whole')

  // More changes, all closed, then SIGKILL: no chance to clean up.
  await fs.writeFile(a.p('d/two.txt'), 'two, written before the kill')
  await fs.writeFile(a.p('d/one.txt'), 'one, edited before the kill')
  await fs.mkdir(a.p('made before kill'))
  await fs.rename(a.p('big.bin'), a.p('made before kill/big.bin'))
  await fs.unlink(a.p('l'))
  const beforeKill = await snapshot(a)
  const pid2 = a.pid()
  t.ok(pid2 && pid2 !== pid1 && isAlive(pid2), 'a new daemon runs')
  // The last file is killed right after its close returns.
  const last = randomBytes(300000)
  await fs.writeFile(a.p('d/last.bin'), last)
  process.kill(pid2, 'SIGKILL')
  await waitForExit(pid2, 'the daemon to die on SIGKILL')
  t.is(await statError(a), 'ENOTCONN', 'the killed daemon leaves the mountpoint dead (ENOTCONN)')

  // The next mount on the same mountpoint recovers it by itself.
  await a.mount(secret)
  t.is(await statError(a), null, 'the mountpoint works again')
  await alone(t, a)
  const pid3 = a.pid()
  t.ok(pid3 && pid3 !== pid2 && isAlive(pid3), 'a new daemon serves the mount')
  const afterKill = await snapshot(a)
  t.ok(afterKill['d/last.bin'] && afterKill['d/last.bin'].sha === sha(last), 'a file closed just before the kill is there, whole')
  delete afterKill['d/last.bin']
  t.alike(afterKill, beforeKill, 'everything else written and closed before the kill is there')
  t.is(await fs.readFile(a.p('d/two.txt'), 'utf8'), 'two, written before the kill', 'a new file written before the kill')
  t.is(await fs.readFile(a.p('d/one.txt'), 'utf8'), 'one, edited before the kill', 'an edit written before the kill')
  t.ok((await fs.readFile(a.p('made before kill/big.bin'))).equals(big), 'the renamed big file reads back whole')

  // And it is a normal mount again: it takes writes and unmounts cleanly.
  await fs.writeFile(a.p('after.txt'), 'after recovery')
  await a.unmount()
  t.absent(isAlive(pid3), 'the daemon exits on unmount')
  await a.mount(secret)
  t.is(await fs.readFile(a.p('after.txt'), 'utf8'), 'after recovery', 'a write after the recovery persists too')
})

test('files still open for writing when SIGTERM arrives are committed', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  await a.mount(secret)
  await fs.writeFile(a.p('existing.txt'), 'existing\n')

  // Two writers that never close: a new file and an append to an existing one.
  const lines = Array.from({ length: 3000 }, (_, i) => `line ${i + 1}\n`).join('')
  const script = [
    `exec 3>${JSON.stringify(a.p('open-new.txt'))}`,
    `exec 4>>${JSON.stringify(a.p('existing.txt'))}`,
    'for i in $(seq 1 3000); do echo "line $i" >&3; done',
    'echo "appended while open" >&4',
    'echo written', // tells the test that every write returned
    'sleep 60'
  ].join('\n')
  const child = spawn('bash', ['-c', script], { cwd: a.dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { err += d })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  t.teardown(() => { try { child.kill('SIGKILL') } catch {} })

  await waitFor(() => out.includes('written'), { timeout: 30000, message: `the writer to finish writing (stderr: ${err})` })
  // The writes are visible through the mount while the files are still open.
  await waitFor(async () => (await fs.stat(a.p('open-new.txt'))).size === Buffer.byteLength(lines), { timeout: 10000, message: 'open-new.txt size while open' })
  t.is(await fs.readFile(a.p('existing.txt'), 'utf8'), 'existing\nappended while open\n', 'the append reads back while open')
  t.is(child.exitCode, null, 'the writer still holds both files open')

  const pid = a.pid()
  process.kill(pid, 'SIGTERM')
  await waitForExit(pid, 'the daemon to exit on SIGTERM with files open')
  child.kill('SIGKILL')
  await exited

  // The open files made the mount busy: it must still have been detached, not left dead.
  t.is(await statError(a), null, 'the mountpoint is not left dead')
  await a.mount(secret)
  await alone(t, a)
  t.is(await fs.readFile(a.p('open-new.txt'), 'utf8'), lines, 'the new file has everything written to it before SIGTERM')
  t.is(await fs.readFile(a.p('existing.txt'), 'utf8'), 'existing\nappended while open\n', 'the append to the existing file is committed')
  t.alike((await fs.readdir(a.mnt)).sort(), ['existing.txt', 'open-new.txt'], 'nothing else appeared')

  // Held through another clean restart as well.
  await a.unmount()
  await a.mount(secret)
  t.is(await fs.readFile(a.p('open-new.txt'), 'utf8'), lines, 'still there after another unmount and mount')
})

test('write-back: close returns before the commit; a SIGKILL before it loses nothing, and the file still reaches other devices', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  await a.mount(secret)
  const folderDir = () => require('path').join(a.dataDir, require('fs').readdirSync(a.dataDir)[0])
  /** Records in the write-back journal: closed files whose commit has not landed. */
  const journals = () => require('fs').readFileSync(require('path').join(folderDir(), 'write-back.journal'), 'utf8').split('\n').filter(Boolean)
  const staged = () => require('fs').readdirSync(require('path').join(folderDir(), 'staging'))

  const big = randomBytes(96 * 1024 * 1024)
  await fs.writeFile(a.p('big.bin'), big)
  const pendingAtClose = journals().length
  const pid = a.pid()
  process.kill(pid, 'SIGKILL')
  await waitForExit(pid, 'the daemon to die on SIGKILL')
  t.is(pendingAtClose, 1, 'close returned while the commit was still pending (one journal record)')

  await a.mount(secret)
  t.ok((await fs.readFile(a.p('big.bin'))).equals(big), 'after the kill the closed file reads back whole')
  await waitFor(() => a.log().includes('committing 1 closed file(s) that the last run had not committed: /big.bin'), { message: 'the replay in the log' })
  t.pass('the daemon replayed the journal')
  await waitFor(() => journals().length === 0 && staged().length === 0, { timeout: 60000, message: 'the replayed commit to land' })
  t.pass('the journal and the staging dir are empty once the commit landed')

  const b = new Device(t, bootstrap, 'B')
  await b.mount(secret)
  await b.waitForContent('big.bin', big, 120000)
  t.pass('the replayed file reaches a second device intact')

  // Closed and at once renamed and chmodded (an editor's save, `cp -p`): the peer gets the
  // final name, mode and bytes.
  const small = randomBytes(5000)
  await fs.writeFile(a.p('save.tmp'), small)
  await fs.chmod(a.p('save.tmp'), 0o600)
  await fs.rename(a.p('save.tmp'), a.p('saved.txt'))
  await b.waitForContent('saved.txt', small)
  t.is((await fs.stat(b.p('saved.txt'))).mode & 0o777, 0o600, 'the mode set right after close arrives')
  await b.waitForMissing('save.tmp')
})
