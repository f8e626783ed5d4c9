'use strict'
// The security model (SECURITY.md): what each kind of secret lets a peer do, and what a
// peer holding less (a modified read-only client, an encrypted seed, an outsider that only
// knows the swarm topic) can never do or learn.
const test = require('brittle')
const fs = require('fs').promises
const fsSync = require('fs')
const path = require('path')
const dgram = require('dgram')
const { spawn } = require('child_process')
const { startTestnet, Device, newSecret, waitFor, sh, BIN, randomBytes, folderWith } = require('./helpers')
const { parseSecret } = require('../dist/secrets')
const { certify, toJson } = require('../dist/model/certificates')

const FIXTURES = path.join(__dirname, 'fixtures')

const stop = (d) => d.stop()

// Children still running when this process ends (a test that throws skips its teardown).
const live = new Set()
process.on('exit', () => { for (const pid of live) try { process.kill(pid, 'SIGKILL') } catch {} })

/** Spawns a long-running node process, keeps its output, kills it (by PID) in teardown. */
function spawnNode (t, args, env, name) {
  const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'pipe'] })
  const proc = { child, name, out: '', exited: false, code: null }
  live.add(child.pid)
  child.stdout.on('data', (d) => { proc.out += d })
  child.stderr.on('data', (d) => { proc.out += d })
  child.stdin.on('error', () => {})
  child.on('exit', (code) => { proc.exited = true; proc.code = code; live.delete(child.pid) })
  proc.waitFor = (re, timeout = 30000) => waitFor(() => re.test(proc.out) || (proc.exited && Promise.reject(new Error(`${name} exited (${proc.code}): ${proc.out}`))), { timeout, message: `${name} to print ${re}` })
  proc.stop = async () => {
    if (proc.exited) return
    try { process.kill(child.pid, 'SIGTERM') } catch {}
    try {
      await waitFor(() => proc.exited, { timeout: 10000, message: `${name} to exit` })
    } catch {
      try { process.kill(child.pid, 'SIGKILL') } catch {}
    }
  }
  t.teardown(() => proc.stop())
  return proc
}

async function secretsOf (d, secret) {
  const r = await d.cli(['secrets', secret, '--json'])
  if (r.code !== 0) throw new Error(`secrets failed: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

async function missing (p) {
  try { await fs.lstat(p); return false } catch (err) { return err.code === 'ENOENT' }
}

/** Every regular file below `dir`. */
async function filesBelow (dir) {
  const out = []
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...await filesBelow(p))
    else if (e.isFile()) out.push(p)
  }
  return out
}

/** Files below `dir` whose bytes contain `needle` (a Buffer). */
async function filesContaining (dir, needle) {
  const hits = []
  for (const f of await filesBelow(dir)) {
    if ((await fs.readFile(f)).includes(needle)) hits.push(f)
  }
  return hits
}

function base32Decode (text) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  const bytes = []
  let bits = 0
  let value = 0
  for (const ch of text) {
    value = ((value << 5) | alphabet.indexOf(ch)) & 0xffff
    bits += 5
    if (bits >= 8) { bytes.push((value >>> (bits - 8)) & 255); bits -= 8 }
  }
  return Buffer.from(bytes)
}

function daemonLog (d) {
  const folderDir = fsSync.readdirSync(d.dataDir).map((f) => path.join(d.dataDir, f)).find((f) => fsSync.statSync(f).isDirectory())
  return fsSync.readFileSync(path.join(folderDir, 'daemon.log'), 'utf8')
}

function folderDirOf (d, secret) {
  return path.join(d.dataDir, parseSecret(secret).folderId)
}

test('read-write and read-only devices: writes of every writer reach all; a read-only mount refuses writes with EROFS', { timeout: 300000 }, async (t) => {
  const { bootstrap, secret, devices: [a, b, r] } = await folderWith(t, ['A', 'B', 'R'], 0)
  const { readOnly } = await secretsOf(a, secret)
  t.ok(readOnly && readOnly.startsWith('tsro-'), 'secrets derives a read-only secret')
  await a.mount(secret)
  await b.mount(secret)
  await r.mount(readOnly)

  // read-write: B's writes reach A, A's reach B
  await fs.writeFile(b.p('from-b.txt'), 'written on B\n')
  await fs.mkdir(b.p('b-dir'))
  await a.waitForContent('from-b.txt', 'written on B\n')
  // Two changes, two log entries: A may see either first (a closed file's commit can wait
  // to group with others, the mkdir does not).
  await waitFor(async () => (await fs.stat(a.p('b-dir'))).isDirectory(), { message: 'A:b-dir' })
  t.pass('B\'s directory reaches A')
  await fs.writeFile(a.p('from-a.txt'), 'written on A\n')
  await b.waitForContent('from-a.txt', 'written on A\n')
  t.pass('writes of a second read-write device reach the first, and back')

  // read-only: sees every change of the writers
  const st = await r.status()
  t.is(st.kind, 'readOnly', 'the read-only mount says so in status')
  t.is(st.device, null, 'a read-only mount has no drive of its own')
  await r.waitForContent('from-b.txt', 'written on B\n')
  await r.waitForContent('from-a.txt', 'written on A\n')
  const big = randomBytes(600 * 1024)
  await fs.writeFile(a.p('big.bin'), big)
  await r.waitForContent('big.bin', big, 60000)
  t.pass('R sees files created on A and B (a multi-block file byte for byte)')
  await fs.appendFile(b.p('from-a.txt'), 'edited on B\n')
  await r.waitForContent('from-a.txt', 'written on A\nedited on B\n')
  t.pass('R sees an edit')
  await fs.unlink(a.p('from-b.txt'))
  await r.waitForMissing('from-b.txt')
  t.pass('R sees a delete')
  await fs.rename(a.p('big.bin'), a.p('b-dir/moved.bin'))
  await r.waitForContent('b-dir/moved.bin', big, 60000)
  await r.waitForMissing('big.bin')
  t.pass('R sees a rename')

  // read-only: every write fails with EROFS
  const modeBefore = (await fs.stat(a.p('from-a.txt'))).mode & 0o777
  const refused = [
    ['create', () => fs.writeFile(r.p('new.txt'), 'x')],
    ['open for writing', () => fs.open(r.p('from-a.txt'), 'r+').then((fh) => fh.close())],
    ['mkdir', () => fs.mkdir(r.p('new-dir'))],
    ['unlink', () => fs.unlink(r.p('from-a.txt'))],
    ['rmdir', () => fs.rmdir(r.p('b-dir'))],
    ['rename', () => fs.rename(r.p('from-a.txt'), r.p('renamed.txt'))],
    ['chmod', () => fs.chmod(r.p('from-a.txt'), 0o600)],
    ['truncate', () => fs.truncate(r.p('from-a.txt'), 1)],
    ['symlink', () => fs.symlink('from-a.txt', r.p('link'))],
    ['utimes', () => fs.utimes(r.p('from-a.txt'), new Date(0), new Date(0))]
  ]
  for (const [what, op] of refused) {
    await t.exception(op(), /EROFS/, `${what} on the read-only mount fails with EROFS`)
  }
  const shell = await r.sh('echo x > via-shell.txt')
  t.not(shell.code, 0, 'a shell redirect into the read-only mount fails')
  t.ok(/Read-only file system/.test(shell.stderr), 'with "Read-only file system"')

  // nothing of that reached anyone
  await new Promise((resolve) => setTimeout(resolve, 2000))
  t.ok(await missing(a.p('new.txt')) && await missing(a.p('new-dir')) && await missing(a.p('renamed.txt')), 'no write of R appears on A')
  t.is(await fs.readFile(a.p('from-a.txt'), 'utf8'), 'written on A\nedited on B\n', 'A\'s file is untouched')
  t.is((await fs.stat(a.p('from-a.txt'))).mode & 0o777, modeBefore, 'A\'s mode is untouched')
  t.is(await fs.readFile(r.p('from-a.txt'), 'utf8'), 'written on A\nedited on B\n', 'R still reads it')
  const members = JSON.parse(await fs.readFile(path.join(folderDirOf(a, secret), 'members.json'), 'utf8'))
  t.is(members.length, 2, 'the folder has two members (A and B): the read-only device is none')
  t.is((await a.status()).members, 2, 'A counts two member drives')
})

test('a modified read-only client with a drive of its own and forged certificates is ignored', { timeout: 300000 }, async (t) => {
  const { bootstrap, secret, devices: [a, b, r] } = await folderWith(t, ['A', 'B', 'R'], 0)
  const { readOnly } = await secretsOf(a, secret)
  await a.mount(secret)
  await b.mount(secret)
  await r.mount(readOnly)
  await fs.writeFile(a.p('before.txt'), 'before\n')
  await b.waitForContent('before.txt', 'before\n')
  await r.waitForContent('before.txt', 'before\n')
  const memberKeys = JSON.parse(await fs.readFile(path.join(folderDirOf(a, secret), 'members.json'), 'utf8')).map((c) => c.driveKey)
  t.is(memberKeys.length, 2, 'A and B are members')

  const logLength = new Map([a, b, r].map((d) => [d, daemonLog(d).length]))
  const rogueDir = path.join(a.dir, '..', `${path.basename(a.dir)}-rogue`)
  await fs.mkdir(rogueDir, { recursive: true })
  const rogue = spawnNode(t, [path.join(FIXTURES, 'rogue-reader.js'), '--bootstrap', bootstrap, '--secret', readOnly, '--dir', rogueDir, '--file', '/rogue.txt'], a.env, 'rogue')
  await rogue.waitFor(/^drive [0-9a-f]{64} length [1-9]/m)
  const rogueKey = rogue.out.match(/^drive ([0-9a-f]{64})/m)[1]
  // It passes the folder proof (it holds a secret), so the devices gossip with it: it
  // learns A's and B's certificates, and it has offered its forged ones in return.
  await rogue.waitFor(/(proved it holds the folder[\s\S]*){3}/, 60000)
  for (const key of memberKeys) await rogue.waitFor(new RegExp(`received certificate ${key}`), 60000)
  t.pass('the rogue is connected to A, B and R and passed the folder proof')

  // The devices keep syncing with each other while the rogue is around.
  await fs.writeFile(b.p('during.txt'), 'during\n')
  await a.waitForContent('during.txt', 'during\n')
  await r.waitForContent('during.txt', 'during\n')
  await new Promise((resolve) => setTimeout(resolve, 10000))
  for (const d of [a, b, r]) {
    t.ok(await missing(d.p('rogue.txt')), `${d.name} does not show rogue.txt`)
    t.absent((await fs.readdir(d.mnt)).includes('rogue.txt'), `${d.name}'s listing does not hold rogue.txt`)
    const members = JSON.parse(await fs.readFile(path.join(folderDirOf(d, secret), 'members.json'), 'utf8')).map((c) => c.driveKey)
    t.absent(members.includes(rogueKey), `${d.name} did not record the rogue's drive as a member`)
    t.is((await d.status()).members, 2, `${d.name} reads two member drives`)
    t.absent(/a new member joined/.test(daemonLog(d).slice(logLength.get(d))), `${d.name} logged no new member after the rogue came`)
  }
  await fs.writeFile(a.p('after.txt'), 'after\n')
  await b.waitForContent('after.txt', 'after\n')
  await r.waitForContent('after.txt', 'after\n')
  t.pass('A, B and R still sync normally')
  t.ok(await missing(r.p('rogue.txt')), 'R still does not show rogue.txt')

  // Control: the very same drive, once certified with the folder key, is read. So it was
  // the forged certificates, and nothing else, that kept it out.
  const keys = parseSecret(secret)
  rogue.child.stdin.write(JSON.stringify(toJson(certify(keys.folderKeyPair, Buffer.from(rogueKey, 'hex')))) + '\n')
  for (const d of [a, b, r]) {
    await waitFor(async () => (await fs.stat(d.p('rogue.txt'))).size === 0, { timeout: 60000, message: `${d.name} to show the validly certified drive's rogue.txt` })
  }
  t.pass('control: a validly certified drive with the same entry shows on A, B and R')
})

test('an encrypted seed keeps the folder available but holds only ciphertext; at rest everything is encrypted', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  const e = new Device(t, bootstrap, 'E') // no mount: its dirs and environment only
  const c = new Device(t, bootstrap, 'C')
  const { encrypted } = await secretsOf(a, secret)
  t.ok(encrypted && encrypted.startsWith('tsen-'), 'secrets derives an encrypted secret')

  const bad = await e.cli(['mount', encrypted, e.mnt, '--data-dir', e.dataDir])
  t.is(bad.code, 2, 'mount with the encrypted secret exits 2')
  t.ok(/encrypted secret cannot be mounted/.test(bad.stderr), `with a clear line: ${bad.stderr.trim()}`)
  t.is(bad.stderr.trim().split('\n').length, 1, 'one line')

  const tag = randomBytes(6).toString('hex')
  const name = `unique-name-${tag}`
  const pattern = `PLAINTEXT-PATTERN-${tag}-`
  const bigContent = Buffer.from(pattern.repeat(Math.ceil(700 * 1024 / pattern.length)))
  const smallContent = Buffer.from(`${pattern} once\n`)
  await a.mount(secret)
  await fs.mkdir(a.p(`${name}-dir`))
  await fs.writeFile(a.p(`${name}-dir/${name}.txt`), bigContent)
  await fs.writeFile(a.p(`${name}-small.txt`), smallContent)

  const seed = spawnNode(t, [BIN, 'seed', encrypted, '--data-dir', e.dataDir], e.env, 'seed')
  await seed.waitFor(/^seeding [a-z2-7]+ \(encrypted\)/m)
  await seed.waitFor(/seeding 1 member\(s\)/, 60000)
  await waitFor(async () => (await a.status()).peers.some((p) => p.verified), { timeout: 60000, message: 'A to see the seed as a verified peer' })
  // The replica downloads every block: wait until the seed's disk holds at least all
  // content bytes (ciphertext is not smaller), then give the last writes a moment.
  const total = bigContent.length + smallContent.length
  await waitFor(async () => Number((await sh(`du -sb ${JSON.stringify(e.dataDir)} | cut -f1`)).stdout.trim()) > total, { timeout: 60000, message: 'the seed to download everything' })
  await new Promise((resolve) => setTimeout(resolve, 3000))

  // Every writer goes offline; a new device gets everything from the seed alone.
  await stop(a)
  await c.mount(secret, ['--read-timeout', '60'])
  await c.waitForContent(`${name}-dir/${name}.txt`, bigContent, 90000)
  await c.waitForContent(`${name}-small.txt`, smallContent, 30000)
  t.pass('a new read-write device reads the right bytes through the encrypted seed alone')
  const peers = (await c.status()).peers
  t.is(peers.length, 1, 'C had a single peer: the seed')
  const found = await c.sh(`grep -r -l -F -e ${JSON.stringify(pattern)} .`)
  t.is(found.code, 0, 'control: grep finds the pattern in the plaintext (C\'s mount)')

  const grepE = await sh(`grep -r -a -q -F -e ${JSON.stringify(name)} -e ${JSON.stringify(pattern)} -e ${JSON.stringify(tag)} ${JSON.stringify(e.dataDir)}`)
  t.is(grepE.code, 1, 'grep -r finds neither the file name nor the content in the seed\'s data dir')
  const eFiles = await filesBelow(e.dataDir)
  t.ok(eFiles.length > 0, `the seed's data dir is not empty (${eFiles.length} files)`)
  t.absent(seed.out.includes(tag), 'the seed\'s log holds neither name nor content')

  const grepA = await sh(`grep -r -a -q -F -e ${JSON.stringify(pattern)} ${JSON.stringify(a.dataDir)}`)
  t.is(grepA.code, 1, 'A\'s data dir holds no plaintext content')
  const grepC = await sh(`grep -r -a -q -F -e ${JSON.stringify(pattern)} ${JSON.stringify(c.dataDir)}`)
  t.is(grepC.code, 1, 'C\'s data dir holds no plaintext content (C read the files, they stay encrypted at rest)')
  t.ok(Number((await sh(`du -sb ${JSON.stringify(c.dataDir)} | cut -f1`)).stdout.trim()) > bigContent.length, 'C holds the bytes it read')

  await seed.stop()
  t.is(seed.code, 0, 'the seed stops cleanly on SIGTERM')
})

test('a peer that knows only the swarm topic is dropped and learns no certificate', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  await a.mount(secret)
  await fs.writeFile(a.p('x.txt'), 'x')
  const topic = parseSecret(secret).topic.toString('hex')
  const dir = path.join(a.dir, '..', `${path.basename(a.dir)}-outsider`)
  await fs.mkdir(dir, { recursive: true })
  const outsider = spawnNode(t, [path.join(FIXTURES, 'outsider.js'), '--bootstrap', bootstrap, '--topic', topic, '--dir', dir], a.env, 'outsider')
  await outsider.waitFor(/"event":"connected"/, 60000)
  await outsider.waitFor(/"event":"closed"/, 15000).catch(() => {})
  const events = outsider.out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
  const closed = events.find((ev) => ev.event === 'closed')
  t.ok(closed, 'A closed the connection')
  t.ok(closed && closed.afterMs < 5000, `A dropped the outsider ${closed && closed.afterMs} ms after it connected`)
  t.is(closed && closed.messages, 0, 'the outsider received no membership message')
  const messages = events.filter((ev) => ev.event === 'message')
  t.is(messages.length, 0, `no certificate reached the outsider on any connection ${messages.length ? JSON.stringify(messages[0]) : ''}`)
  t.ok(/failed the folder proof/.test(daemonLog(a)), 'A logged why it dropped the peer')
  await waitFor(async () => (await a.status()).peers.length === 0, { timeout: 10000, message: 'A to list no peer' })
  t.absent(/proved it holds the folder/.test(daemonLog(a)), 'A never counted the outsider as proven')
  t.absent(outsider.out.includes(JSON.parse(await fs.readFile(path.join(folderDirOf(a, secret), 'members.json'), 'utf8'))[0].driveKey), 'the outsider never saw A\'s drive key')
})

test('data dir permissions, and the read-write secret is never written down', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  const b = new Device(t, bootstrap, 'B')
  const secretFile = path.join(b.dir, 'secret')
  await fs.writeFile(secretFile, secret + '\n', { mode: 0o600 })
  await a.mount(secret) // on the command line
  await b.mount(secretFile) // from a file
  await fs.writeFile(a.p('f.txt'), 'f')
  await b.waitForContent('f.txt', 'f')
  const mode = async (p) => (await fs.stat(p)).mode & 0o777

  const seed = base32Decode(secret.slice('tsrw-'.length)).subarray(0, 32)
  const keys = parseSecret(secret)
  for (const d of [a, b]) {
    const folder = folderDirOf(d, secret)
    t.is(await mode(d.dataDir), 0o700, `${d.name}: the data dir is 0700`)
    t.is(await mode(folder), 0o700, `${d.name}: the folder dir is 0700`)
    t.is(await mode(path.join(folder, 'staging')), 0o700, `${d.name}: the staging dir is 0700`)
    for (const f of ['members.json', 'daemon.log', 'daemon.pid']) {
      t.is(await mode(path.join(folder, f)), 0o600, `${d.name}: ${f} is 0600`)
    }
    const top = (await fs.readdir(folder, { withFileTypes: true })).filter((e) => e.isFile())
    for (const e of top) t.absent((await mode(path.join(folder, e.name))) & 0o077, `${d.name}: ${e.name} is not readable by others`)

    const status = await d.cli(['status', d.mnt, '--json'])
    t.is(status.code, 0, 'status --json works')
    const human = await d.cli(['status'])
    t.absent(status.stdout.includes(secret) || human.stdout.includes(secret), `${d.name}: status does not print the secret`)
    t.absent(status.stdout.includes(keys.readOnly) || human.stdout.includes(keys.readOnly), `${d.name}: nor the read-only secret`)
    t.absent(daemonLog(d).includes(secret), `${d.name}: the daemon log does not hold the secret`)
    const grep = await sh(`grep -r -a -q -F -e ${JSON.stringify(secret)} -e ${JSON.stringify(secret.slice(5))} ${JSON.stringify(d.dataDir)} ${JSON.stringify(d.env.TSYNCFS_RUNTIME_DIR)}`)
    t.is(grep.code, 1, `${d.name}: grep -r finds the secret nowhere in the data dir or the runtime dir`)
    t.alike(await filesContaining(d.dataDir, seed), [], `${d.name}: the raw secret bytes are in no file of the data dir`)
    t.alike(await filesContaining(d.dataDir, keys.folderKeyPair.secretKey.subarray(0, 32)), [], `${d.name}: nor the folder's signing key`)
    t.alike(await filesContaining(d.dataDir, keys.contentKey), [], `${d.name}: nor the content key`)
    const cmdline = await fs.readFile(`/proc/${d.pid()}/cmdline`, 'utf8')
    t.absent(cmdline.includes(secret.slice(5, 30)), `${d.name}: the daemon's command line (ps) does not show the secret`)
    const environ = await fs.readFile(`/proc/${d.pid()}/environ`, 'utf8')
    t.absent(environ.includes(secret.slice(5, 30)), `${d.name}: nor its environment`)
  }

  // Still true once stopped (everything flushed).
  await stop(a)
  const grep = await sh(`grep -r -a -q -F -e ${JSON.stringify(secret.slice(5))} ${JSON.stringify(a.dataDir)}`)
  t.is(grep.code, 1, 'after unmount, the secret is nowhere in the data dir')
  t.alike(await filesContaining(a.dataDir, seed), [], 'nor its raw bytes')
})

test('bad secrets fail with exit 2 and one clear line, before any network traffic', { timeout: 300000 }, async (t) => {
  // A fake bootstrap node: any DHT traffic would reach it.
  const socket = dgram.createSocket('udp4')
  let packets = 0
  socket.on('message', () => { packets++ })
  await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve))
  t.teardown(() => socket.close())
  const bootstrap = `127.0.0.1:${socket.address().port}`
  const d = new Device(t, bootstrap, 'X')
  const secret = await newSecret()
  const { readOnly, encrypted } = await secretsOf(d, secret)

  const body = secret.slice(5)
  const i = Math.floor(body.length / 2)
  const typo = 'tsrw-' + body.slice(0, i) + (body[i] === 'a' ? 'b' : 'a') + body.slice(i + 1)
  const cases = [
    ['truncated read-write secret', secret.slice(0, -3), /malformed secret.*(length|cut short)/],
    ['read-write secret with a one-character typo', typo, /malformed secret.*(checksum|typo)/],
    ['read-only secret with a one-character typo', readOnly.slice(0, 20) + (readOnly[20] === 'q' ? 'r' : 'q') + readOnly.slice(21), /malformed secret.*(checksum|typo)/],
    ['truncated encrypted secret', encrypted.slice(0, -1), /malformed secret/],
    ['an invalid character', secret.slice(0, -1) + '1', /malformed secret/],
    ['an unknown prefix', 'tsxx-' + body, /not a tsyncfs secret|nor a readable file/]
  ]
  for (const [what, bad, re] of cases) {
    const started = Date.now()
    const r = await d.cli(['mount', bad, d.mnt, '--data-dir', d.dataDir])
    t.is(r.code, 2, `mount with a ${what} exits 2`)
    t.ok(re.test(r.stderr), `with a clear line: ${r.stderr.trim()}`)
    t.is(r.stderr.trim().split('\n').length, 1, 'one line, no stack trace')
    t.absent(r.stderr.includes(bad.slice(5, 20)), 'the line does not repeat the secret')
    t.ok(Date.now() - started < 10000, 'at once')
  }
  t.ok(await missing(d.dataDir), 'no data dir was created')
  const typoSecrets = await d.cli(['secrets', typo])
  t.is(typoSecrets.code, 2, 'secrets with a typo exits 2')
  const garbage = await d.cli(['seed', 'tsen-thisisnotasecret', '--data-dir', d.dataDir])
  t.is(garbage.code, 2, 'seed with a garbage secret exits 2')
  t.ok(/malformed secret/.test(garbage.stderr), `with a clear line: ${garbage.stderr.trim()}`)
  const truncatedSeed = await d.cli(['seed', encrypted.slice(0, -2), '--data-dir', d.dataDir])
  t.is(truncatedSeed.code, 2, 'seed with a truncated secret exits 2')
  const notSecret = await d.cli(['seed', path.join(d.dir, 'no-such-file'), '--data-dir', d.dataDir])
  t.is(notSecret.code, 2, 'seed with neither a secret nor a file exits 2')
  t.ok(await missing(d.dataDir), 'still no data dir')
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.is(packets, 0, 'the bootstrap node received no packet')

  // Control: a good secret does reach the (fake) bootstrap node.
  const seed = spawnNode(t, [BIN, 'seed', encrypted, '--data-dir', d.dataDir], d.env, 'seed')
  await waitFor(() => packets > 0, { timeout: 20000, message: 'a good secret to cause DHT traffic' })
  t.pass('control: with a good secret the fake bootstrap node does get packets')
  await seed.stop()
})

test('a seed that tampers with the blocks it sends never makes a reader see wrong bytes', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  const s = new Device(t, bootstrap, 'S') // no mount: the tampering seed's dirs
  const c = new Device(t, bootstrap, 'C')
  const d = new Device(t, bootstrap, 'D')
  const { encrypted } = await secretsOf(a, secret)
  const content = randomBytes(1024 * 1024 + 4321) // five blocks
  await a.mount(secret)
  await fs.writeFile(a.p('f.bin'), content)

  const seed = spawnNode(t, [path.join(FIXTURES, 'tampering-seed.js'), 'seed', encrypted, '--data-dir', s.dataDir], s.env, 'tampering seed')
  await seed.waitFor(/seeding 1 member\(s\)/, 60000)
  await waitFor(async () => Number((await sh(`du -sb ${JSON.stringify(s.dataDir)} | cut -f1`)).stdout.trim()) > content.length, { timeout: 60000, message: 'the seed to download everything' })
  await new Promise((resolve) => setTimeout(resolve, 3000))

  /** Reads f.bin on `dev`: 'ok' (the right bytes), 'EIO', or what else happened. */
  const attempt = async (dev) => {
    try {
      return (await fs.readFile(dev.p('f.bin'))).equals(content) ? 'ok' : 'WRONG BYTES'
    } catch (err) {
      return err.code || err.message
    }
  }

  // With the honest writer gone, the tampering seed is the only source of the blocks.
  const tampered = () => (seed.out.match(/tampered block \d+/g) || []).length
  const tamperedBefore = tampered()
  await stop(a)
  await c.mount(secret, ['--read-timeout', '8'])
  await waitFor(async () => (await fs.stat(c.p('f.bin'))).size === content.length, { timeout: 60000, message: 'C to see f.bin (metadata from the seed)' })
  const alone = await attempt(c)
  t.is(alone, 'EIO', 'reading through the tampering seed alone fails with EIO, not with wrong bytes')
  const why = c.failedReadLine()
  t.ok(/\(peer [0-9a-f]{16}: has \d+ of \d+ blocks/.test(why), `C's log says what it knows of the seed it asked (${why.trim()})`)
  t.ok(tampered() > tamperedBefore, `the seed did send C tampered blocks (${tampered() - tamperedBefore})`)
  const partial = await c.sh('dd if=f.bin of=/dev/null bs=4096 skip=100 count=1 2>&1')
  t.not(partial.code, 0, 'a read of one block fails too')
  t.ok(/Input\/output error/.test(partial.stdout), `with EIO: ${partial.stdout.trim().split('\n')[0]}`)

  // The honest writer comes back: now every read gives the right bytes or EIO, and soon the right bytes.
  await a.mount(secret)
  for (const dev of [c, d]) {
    if (dev === d) await d.mount(secret, ['--read-timeout', '8'])
    const seen = []
    await waitFor(async () => {
      const r = await attempt(dev)
      seen.push(r)
      return r === 'ok' || r === 'WRONG BYTES'
    }, { timeout: 90000, interval: 500, message: `${dev.name} to read f.bin` })
    t.alike(seen.filter((r) => r !== 'EIO' && r !== 'ENOENT'), ['ok'], `${dev.name} reads the right bytes with the tampering seed still online (attempts: ${seen.join(', ')})`)
  }
  const hash = (b) => require('crypto').createHash('sha256').update(b).digest('hex')
  const onC = await c.sh('sha256sum f.bin')
  t.is(onC.stdout.split(' ')[0], hash(content), 'sha256sum on C agrees')
})
