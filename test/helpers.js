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
  constructor (t, bootstrap, name) {
    this.t = t
    this.name = name || `dev${deviceCount}`
    this.dir = path.join(RUN_DIR, `${process.pid}-${deviceCount++}-${this.name}`)
    this.mnt = path.join(this.dir, 'mnt')
    this.dataDir = path.join(this.dir, 'data')
    this.env = baseEnv(bootstrap)
    fs.mkdirSync(this.mnt, { recursive: true })
    t.teardown(() => this.cleanup())
  }

  /** bin/tsyncfs with this device's environment. */
  cli (args, opts = {}) {
    return exec(process.execPath, [BIN, ...args], { env: this.env, ...opts })
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
    const res = await sh(`du -sb ${JSON.stringify(this.dataDir)} | cut -f1`)
    return Number(res.stdout.trim())
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

module.exports = { alive, folderWith, ROOT, BIN, RUN_DIR, startTestnet, Device, exec, sh, waitFor, randomBytes, newSecret, baseEnv }
