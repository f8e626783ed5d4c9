'use strict'
// Shared test helpers: a loopback testnet, devices that drive the real bin/tsyncfs,
// shell commands run in child processes, and polling with a deadline.
const path = require('path')
const os = require('os')
const fs = require('fs')
const { execFile, spawn } = require('child_process')
const createTestnet = require('hyperdht/testnet')

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'tsyncfs')
// Every test run keeps its files (and daemons' sockets) below one directory, so the
// runner can clean up whatever a crashed test left behind.
const RUN_DIR = process.env.TSYNCFS_TEST_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'tsyncfs-test-'))

async function startTestnet (t) {
  const testnet = await createTestnet(3, { host: '127.0.0.1' })
  t.teardown(() => testnet.destroy(), { order: Infinity })
  return testnet.bootstrap.map((b) => `${b.host}:${b.port}`).join(',')
}

function baseEnv (bootstrap) {
  return {
    ...process.env,
    TSYNCFS_BOOTSTRAP: bootstrap,
    TSYNCFS_BIND: '127.0.0.1',
    // LAN discovery multicasts: only ever on in network namespaces a test made.
    TSYNCFS_LAN: '0',
    TSYNCFS_RUNTIME_DIR: path.join(RUN_DIR, 'run')
  }
}

/** Runs a command; resolves { code, stdout, stderr } and never rejects. */
function exec (file, args, opts = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: opts.timeout || 120000, maxBuffer: 64 * 1024 * 1024, ...opts }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr })
    })
  })
}

/** Runs a shell command line in a child process (never touch a mount synchronously). */
function sh (cmd, opts = {}) {
  return exec('bash', ['-c', cmd], opts)
}

async function waitFor (fn, { timeout = 30000, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  let last
  while (Date.now() < deadline) {
    try {
      last = await fn()
      if (last) return last
    } catch (err) {
      last = err
    }
    await new Promise((resolve) => setTimeout(resolve, interval))
  }
  throw new Error(`timed out waiting for ${message} (last: ${last && last.message ? last.message : JSON.stringify(last)})`)
}

let deviceCount = 0

class Device {
  /**
   * `host`: a network namespace from makeLan; the device's daemon then lives there. It is
   * entered with nsenter, not `ip netns exec`, which would also give the daemon a mount
   * namespace of its own and hide its FUSE mount from everyone else.
   */
  constructor (t, bootstrap, name, host = null) {
    this.t = t
    this.name = name || `dev${deviceCount}`
    this.dir = path.join(RUN_DIR, `${process.pid}-${deviceCount++}-${this.name}`)
    this.mnt = path.join(this.dir, 'mnt')
    this.dataDir = path.join(this.dir, 'data')
    this.host = host
    this.env = baseEnv(bootstrap)
    if (host) {
      // Real interfaces, and never the public DHT even by mistake (nothing listens there).
      this.env.TSYNCFS_BIND = ''
      if (!bootstrap) this.env.TSYNCFS_BOOTSTRAP = '127.0.0.1:9'
    }
    fs.mkdirSync(this.mnt, { recursive: true })
    t.teardown(() => this.cleanup())
  }

  /** bin/tsyncfs with this device's environment (inside its namespace, if it has one). */
  cli (args, opts = {}) {
    if (this.host) return exec('nsenter', [`--net=/run/netns/${this.host.ns}`, process.execPath, BIN, ...args], { env: this.env, ...opts })
    return exec(process.execPath, [BIN, ...args], { env: this.env, ...opts })
  }

  /** This device's daemon log. */
  log () {
    const dirs = fs.existsSync(this.dataDir) ? fs.readdirSync(this.dataDir) : []
    return dirs.map((d) => {
      try { return fs.readFileSync(path.join(this.dataDir, d, 'daemon.log'), 'utf8') } catch { return '' }
    }).join('')
  }

  /** The first line of this daemon's log that `pattern` matches ('' if none). */
  logLine (pattern) {
    return this.log().split('\n').find((l) => pattern.test(l)) || ''
  }

  /** The first line of this daemon's log that says why a block could not be read ('' if none). */
  failedReadLine () {
    return this.logLine(/I\/O error: EIO: block \d+ not available/)
  }

  async mount (secret, extra = []) {
    const res = await this.cli(['mount', secret, this.mnt, '--data-dir', this.dataDir, ...extra])
    if (res.code !== 0) throw new Error(`mount failed (${res.code}): ${res.stderr}`)
    return res
  }

  async unmount () {
    const res = await this.cli(['unmount', this.mnt])
    if (res.code !== 0) throw new Error(`unmount failed (${res.code}): ${res.stderr}`)
    return res
  }

  /** Unmounts and waits until the daemon process is gone. */
  async stop () {
    const pid = this.pid()
    await this.unmount()
    if (pid) await waitFor(() => !alive(pid), { timeout: 60000, message: `${this.name}'s daemon (pid ${pid}) to exit` })
  }

  async status () {
    const res = await this.cli(['status', this.mnt, '--json'])
    if (res.code !== 0) throw new Error(`status failed: ${res.stderr}`)
    return JSON.parse(res.stdout)
  }

  /** Path inside the mount. */
  p (rel) {
    return path.join(this.mnt, rel)
  }

  sh (cmd, opts) {
    return sh(cmd, { cwd: this.mnt, ...opts })
  }

  /** Resolves once `rel` in this mount has `content` (string or Buffer). */
  waitForContent (rel, content, timeout = 30000) {
    const want = Buffer.isBuffer(content) ? content : Buffer.from(content)
    return waitFor(async () => (await fs.promises.readFile(this.p(rel))).equals(want), { timeout, message: `${this.name}:${rel} content` })
  }

  waitForMissing (rel, timeout = 30000) {
    return waitFor(async () => {
      try { await fs.promises.lstat(this.p(rel)); return false } catch (err) { return err.code === 'ENOENT' }
    }, { timeout, message: `${this.name}:${rel} to disappear` })
  }

  pid () {
    try {
      const reg = fs.readdirSync(this.env.TSYNCFS_RUNTIME_DIR)
        .filter((f) => f.endsWith('.json'))
        .map((f) => JSON.parse(fs.readFileSync(path.join(this.env.TSYNCFS_RUNTIME_DIR, f), 'utf8')))
        .find((r) => r.mountpoint === this.mnt)
      return reg ? reg.pid : null
    } catch {
      return null
    }
  }

  /** Bytes this device's data dir holds on disk. */
  async diskUsage () {
    return dataDirBytes(this.dataDir)
  }

  async cleanup () {
    const pid = this.pid()
    await this.cli(['unmount', this.mnt], { timeout: 30000 })
    if (pid) try { process.kill(pid, 'SIGKILL') } catch {}
    await exec('fusermount', ['-uz', this.mnt])
  }
}

function alive (pid) {
  try { process.kill(pid, 0); return true } catch { return false }
}

function randomBytes (n) {
  return require('crypto').randomBytes(n)
}

/** A testnet, a new folder, and devices named `names` on it; the first `mounted` of them mounted. */
async function folderWith (t, names, mounted = names.length) {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const devices = names.map((name) => new Device(t, bootstrap, name))
  for (const d of devices.slice(0, mounted)) await d.mount(secret)
  return { bootstrap, secret, devices }
}

async function newSecret () {
  const res = await exec(process.execPath, [BIN, 'new'])
  return res.stdout.trim()
}

let lanCount = 0

/** Runs `ip` and throws on failure. */
async function ip (args) {
  const res = await exec('ip', args)
  if (res.code !== 0) throw new Error(`ip ${args.join(' ')}: ${res.stderr}`)
  return res.stdout
}

/**
 * `count` hosts on one Ethernet segment: a network namespace each (10.77.X.i/24 on eth0,
 * lo up, no other route), joined by a bridge in a namespace of its own. Everything is
 * deleted at teardown, processes left inside killed by PID; the names are also written to
 * RUN_DIR/netns so the test runner can clean up after a crash.
 */
async function makeLan (t, count, { join = [] } = {}) {
  const id = lanCount++
  const tag = `tsd${process.pid % 100000}n${id}`
  const sw = `${tag}sw`
  const hosts = Array.from({ length: count }, (_, i) => ({ ns: `${tag}h${i}`, ip: `10.77.${id}.${i + 1}` }))
  const all = [sw, ...hosts.map((h) => h.ns)]
  // Hosts of another segment that get a second interface on this one (a router without forwarding).
  const joined = join.map((h, j) => ({ ns: h.ns, ip: `10.77.${id}.${count + j + 1}`, dev: `eth${id}`, existing: true }))
  fs.mkdirSync(RUN_DIR, { recursive: true })
  fs.appendFileSync(path.join(RUN_DIR, 'netns'), all.join('\n') + '\n')
  t.teardown(() => deleteNamespaces(all), { order: Infinity })
  await ip(['netns', 'add', sw])
  await ip(['-n', sw, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0'])
  await ip(['-n', sw, 'link', 'set', 'br0', 'up'])
  for (const [i, h] of [...hosts, ...joined].entries()) {
    const dev = h.dev || 'eth0'
    if (!h.existing) await ip(['netns', 'add', h.ns])
    await ip(['-n', sw, 'link', 'add', `p${i}`, 'type', 'veth', 'peer', 'name', dev, 'netns', h.ns])
    await ip(['-n', sw, 'link', 'set', `p${i}`, 'master', 'br0', 'up'])
    await ip(['-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', dev])
    await ip(['-n', h.ns, 'link', 'set', dev, 'up'])
    await ip(['-n', h.ns, 'link', 'set', 'lo', 'up'])
  }
  return [...hosts, ...joined]
}

async function deleteNamespaces (names) {
  for (const ns of names) {
    const pids = (await exec('ip', ['netns', 'pids', ns])).stdout.split('\n').filter(Boolean).map(Number)
    for (const pid of pids) try { process.kill(pid, 'SIGKILL') } catch {}
    await exec('ip', ['netns', 'del', ns])
  }
}

/** Starts a long-running command inside a namespace (`host` null: here, on loopback);
 *  killed by PID at teardown. */
function spawnIn (t, host, file, args, opts = {}) {
  const [cmd, argv] = host ? ['nsenter', [`--net=/run/netns/${host.ns}`, file, ...args]] : [file, args]
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
  child.output = ''
  child.stdout.on('data', (d) => { child.output += d })
  child.stderr.on('data', (d) => { child.output += d })
  t.teardown(() => { try { child.kill('SIGKILL') } catch {} })
  return child
}

/** Bytes a data dir takes: apparent sizes (an open RocksDB allocates ahead of what it
 *  holds), except for the read copies of cached blocks, sparse files, counted allocated. */
async function dataDirBytes (dir) {
  const q = JSON.stringify(dir)
  const res = await sh(`du -sb --exclude=copies ${q} | cut -f1; find ${q} -path '*/copies/*' -type f -printf '%b\\n'`)
  const [apparent, ...blocks] = res.stdout.trim().split('\n')
  return Number(apparent) + blocks.reduce((n, b) => n + Number(b) * 512, 0)
}

module.exports = { dataDirBytes, makeLan, spawnIn, deleteNamespaces, alive, folderWith, ROOT, BIN, RUN_DIR, startTestnet, Device, exec, sh, waitFor, randomBytes, newSecret, baseEnv }
