// The tsyncfs command line.
import { promises as fs, openSync, closeSync } from 'fs'
import path from 'path'
import { isIPv4 } from 'net'
import { spawn } from 'child_process'
import { newReadWriteSecret, parseSecret, FolderKeys, SecretError } from '../secrets'
import { parseHostPorts, HostPort } from '../swarm/network'
import { startBootstrapNodes } from '../swarm/bootstrap-nodes'
import { Daemon, DaemonConfig, makeLogger, prepareFolderDir } from '../daemon/daemon'
import { defaultDataDir, mountKey } from '../daemon/paths'
import { DAEMON_NODE_FLAGS } from '../daemon/heap'
import { runSeed, SeedConfig } from '../daemon/seed'
import { ControlResponse, isAlive, registrations, request, Registration } from '../daemon/control'
import { cacheOf, DaemonError, statusOf } from '../daemon/client'
import { webCommand } from './web'
import { WebApi } from './web-api'
import { checkFuseDevice, detach, isTsyncfsMount, loadFuse, prepareMountpoint } from '../fs/mount'
import { UserError } from '../user-error'
import { FlagSpec, parseArgs, Parsed } from './args'
import { fromHelperForm } from './mount-options'
import { withConfigFile } from './config-file'
import { DISCOVERY_FLAGS, DISCOVERY_USAGE, discoveryConfig } from './discovery-options'
import { parseSize } from '../cache/block-cache'

interface Command {
  usage: string
  flags: FlagSpec
  run(args: Parsed): Promise<void>
}

const MOUNT_FLAGS: FlagSpec = {
  'data-dir': 'string', bootstrap: 'string', bind: 'string', foreground: 'boolean',
  'read-timeout': 'string', 'allow-other': 'boolean', ro: 'boolean',
  uid: 'string', gid: 'string', umask: 'string', 'cache-size': 'string', 'keep-all': 'boolean', help: 'boolean',
  config: 'string', ...DISCOVERY_FLAGS
}

const SEED_FLAGS: FlagSpec = { 'data-dir': 'string', bootstrap: 'string', bind: 'string', help: 'boolean', relay: 'boolean', config: 'string', ...DISCOVERY_FLAGS }

const COMMANDS: Record<string, Command> = {
  new: {
    usage: 'tsyncfs new\n  Prints a new read-write secret for a new folder, on one line.',
    flags: { help: 'boolean' },
    async run() {
      console.log(newReadWriteSecret())
    }
  },
  secrets: {
    usage: 'tsyncfs secrets <secret> [--json]\n  Prints the read-only and encrypted secrets derived from a secret (the ones it can derive).',
    flags: { json: 'boolean', help: 'boolean' },
    async run({ positionals, flags }) {
      const keys = await readSecret(positionals[0])
      const out = { readWrite: keys.readWrite ?? undefined, readOnly: keys.readOnly ?? undefined, encrypted: keys.encrypted }
      if (flags.json) console.log(JSON.stringify(out))
      else for (const [kind, secret] of Object.entries(out)) if (secret) console.log(`${kind.padEnd(10)} ${secret}`)
    }
  },
  mount: {
    usage: [
      'tsyncfs mount <secret|secret-file> <mountpoint> [options]',
      '  Mounts the folder and returns once the mount answers; a daemon serves it.',
      '  --data-dir DIR        where this device keeps the folder (env TSYNCFS_DATA_DIR;',
      '                        default $XDG_DATA_HOME/tsyncfs)',
      '  --bootstrap H:P[,..]  DHT bootstrap nodes (env TSYNCFS_BOOTSTRAP; default: public DHT)',
      '  --bind HOST           address to bind the DHT socket to (env TSYNCFS_BIND)',
      ...DISCOVERY_USAGE,
      '  --read-timeout SEC    how long a read waits for a peer before EIO (default 60)',
      '  --allow-other         let other users access the mount',
      '  --ro                  mount read-only, even with a read-write secret',
      '  --cache-size SIZE     limit of other devices\' content kept here (20G, 512M; default',
      '                        10G, or half the free disk space if that is less)',
      '  --keep-all            keep a full local copy of everything (no eviction)',
      '  --uid N, --gid N      owner shown for every file (default: the caller)',
      '  --umask OCTAL         permission bits to hide from every mode',
      '  --config FILE         defaults for these options (JSON; default $XDG_CONFIG_HOME/tsyncfs/config.json)',
      '  The form `tsyncfs SOURCE DIR -o data_dir=..,bootstrap=..,ro,...` (mount.fuse) works too.',
      '  --foreground          serve in this process, log to stderr'
    ].join('\n'),
    flags: MOUNT_FLAGS,
    async run({ positionals, flags }) {
      if (positionals.length !== 2) throw new UserError('usage: tsyncfs mount <secret> <mountpoint> (see --help)', 2)
      const secretText = await readSecretText(positionals[0])
      const keys = parseOrExit(secretText)
      const config = mountConfig(positionals[1], await withConfigFile(flags, MOUNT_FLAGS))
      if (flags.foreground) return runForeground(keys, config)
      return runDetached(keys, secretText, config)
    }
  },
  status: {
    usage: 'tsyncfs status [mountpoint] [--json]\n  Folder id, peers, files and bytes local/total of one mount, or of every mount.',
    flags: { json: 'boolean', help: 'boolean' },
    async run({ positionals, flags }) {
      const regs = positionals[0] ? [await findMount(positionals[0])] : await registrations()
      const results = await viaWebOr<unknown>(regs, async (api) => {
        const folders = await api.get<Array<{ mountpoint: string; state: string }>>('/api/folders')
        const found = regs.map((reg) => folders.find((f) => f.mountpoint === reg.mountpoint))
        // A daemon that does not answer: ask it directly, for its own error message.
        if (found.some((f) => f?.state !== 'mounted')) throw new Error('a daemon did not answer the web server')
        return found
      }, (reg) => statusOf(reg).catch(userError))
      if (flags.json) console.log(JSON.stringify(positionals[0] ? results[0] : results, null, 2))
      else if (results.length === 0) console.log('no tsyncfs folder is mounted')
      else console.log(results.map((r) => formatStatus(r as StatusResult)).join('\n\n'))
    }
  },
  unmount: {
    usage: 'tsyncfs unmount <mountpoint> [--lazy]\n  Commits pending writes, unmounts and stops the daemon. --lazy detaches a busy mount.',
    flags: { lazy: 'boolean', help: 'boolean' },
    async run({ positionals, flags }) {
      if (!positionals[0]) throw new UserError('usage: tsyncfs unmount <mountpoint>', 2)
      const mountpoint = path.resolve(positionals[0])
      const reg = (await registrations()).find((r) => r.mountpoint === mountpoint)
      if (!reg) {
        // A crashed daemon leaves a dead mount behind: detach it (only ours, never another filesystem).
        if (await isTsyncfsMount(mountpoint)) return detach(mountpoint)
        throw new UserError(`${mountpoint} is not a tsyncfs mount`)
      }
      unwrap(await request(reg.socket, { cmd: 'unmount', lazy: !!flags.lazy }))
      await waitForExit(reg.pid, 30000)
    }
  },
  seed: {
    usage: [
      'tsyncfs seed <secret|secret-file> [--data-dir DIR] [--bootstrap H:P,..] [--bind HOST] [--relay] [discovery options]',
      '  Keeps a full replica of the folder and serves it, without mounting, until stopped.',
      '  Any kind of secret works; with the encrypted one the replica stays ciphertext.',
      '  --relay               also relay (blindly) between devices of the folder that cannot holepunch',
      '  --config FILE         defaults for these options (as for mount)',
      ...DISCOVERY_USAGE
    ].join('\n'),
    flags: SEED_FLAGS,
    async run({ positionals, flags: given }) {
      if (positionals.length !== 1) throw new UserError('usage: tsyncfs seed <secret> (see --help)', 2)
      const keys = await readSecret(positionals[0])
      const flags = await withConfigFile(given, SEED_FLAGS)
      const stop = await runSeed(keys, { ...commonConfig(flags), relay: flags.relay === true }, makeLogger())
      console.log(`seeding ${keys.folderId} (${keys.kind})`)
      const exit = () => stop().then(() => process.exit(0), () => process.exit(1))
      process.on('SIGTERM', exit)
      process.on('SIGINT', exit)
    }
  },
  pin: {
    usage: 'tsyncfs pin <path>\n  Fetches a file or directory of a mount whole, now, and keeps it whatever the cache size.\n  New files that arrive in a pinned directory are pinned too.',
    flags: { help: 'boolean' },
    async run({ positionals }) {
      const { reg, rel } = await locate(positionals[0])
      unwrap(await request(reg.socket, { cmd: 'pin', path: rel }))
      console.log(`pinned ${rel} in ${reg.mountpoint}`)
    }
  },
  unpin: {
    usage: 'tsyncfs unpin <path>\n  Lets a pinned file or directory be evicted again.',
    flags: { help: 'boolean' },
    async run({ positionals }) {
      const { reg, rel } = await locate(positionals[0])
      unwrap(await request(reg.socket, { cmd: 'unpin', path: rel }))
      console.log(`unpinned ${rel} in ${reg.mountpoint}`)
    }
  },
  cache: {
    usage: 'tsyncfs cache [mountpoint] [--json]\n  Local, pinned and evictable bytes, the limit and the hit rate of the block cache.',
    flags: { json: 'boolean', help: 'boolean' },
    async run({ positionals, flags }) {
      const regs = positionals[0] ? [await findMount(positionals[0])] : await registrations()
      const results = await viaWebOr<unknown>(regs,
        (api) => Promise.all(regs.map((reg) => api.get(`/api/folders/${mountKey(reg.mountpoint)}/cache`))),
        (reg) => cacheOf(reg).catch(userError)) as CacheResult[]
      if (flags.json) console.log(JSON.stringify(positionals[0] ? results[0] : results, null, 2))
      else if (results.length === 0) console.log('no tsyncfs folder is mounted')
      else console.log(results.map(formatCache).join('\n\n'))
    }
  },
  web: webCommand,
  bootstrap: {
    usage: 'tsyncfs bootstrap [--host 127.0.0.1] [--port 49737] [--nodes 5]\n  Runs DHT bootstrap nodes for a private network, until stopped. --host: the IPv4\n  address devices reach this host at; at least 3 nodes (devices classify their NAT with them).',
    flags: { host: 'string', port: 'string', nodes: 'string', help: 'boolean' },
    async run({ flags }) {
      const host = String(flags.host ?? '127.0.0.1')
      const port = Number(flags.port ?? 49737)
      const nodes = Number(flags.nodes ?? 5)
      if (!isIPv4(host)) throw new UserError(`bad --host "${host}": expected the IPv4 address devices reach this host at`, 2)
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`bad port "${flags.port}"`, 2)
      if (!Number.isInteger(nodes) || nodes < 3) throw new UserError(`bad node count "${flags.nodes}": at least 3 (devices classify their NAT with 3)`, 2)
      const net = await startBootstrapNodes(host, port, nodes)
      console.log(`bootstrap node listening on ${net.addresses.map((b) => `${b.host}:${b.port}`).join(',')}`)
      const stop = () => net.destroy().then(() => process.exit(0))
      process.on('SIGTERM', stop)
      process.on('SIGINT', stop)
    }
  }
}

export function main(argv: string[]): void {
  run(argv).catch((err: unknown) => {
    if (err instanceof UserError) {
      console.error(`tsyncfs: ${err.message}`)
      process.exit(err.exitCode)
    }
    console.error(`tsyncfs: ${(err as Error)?.message ?? String(err)}`)
    process.exit(1)
  })
}

async function run(argv: string[]): Promise<void> {
  const [name, ...rest] = argv
  if (name === '__daemon') return runDaemonChild()
  if (!name || name === '--help' || name === 'help') return printHelp()
  const command = COMMANDS[name]
  if (!command && !name.startsWith('-') && rest.length >= 1) return run(fromHelperForm(argv))
  if (!command) throw new UserError(`unknown command "${name}" (see tsyncfs --help)`, 2)
  const args = parseArgs(rest, command.flags)
  if (args.flags.help) return void console.log(command.usage)
  await command.run(args)
}

function printHelp(): void {
  console.log('tsyncfs: a synced folder you mount, with lazy peer-to-peer reads\n')
  for (const command of Object.values(COMMANDS)) console.log(command.usage + '\n')
}

// --- secrets ---

async function readSecretText(arg: string | undefined): Promise<string> {
  if (!arg) throw new UserError('a secret is needed (see --help)', 2)
  if (/^ts(rw|ro|en)-/.test(arg)) return arg
  try {
    return (await fs.readFile(arg, 'utf8')).trim()
  } catch {
    throw new UserError(`"${arg.length > 12 ? arg.slice(0, 12) + '...' : arg}" is not a tsyncfs secret, nor a readable file holding one`, 2)
  }
}

function parseOrExit(text: string): FolderKeys {
  try {
    return parseSecret(text)
  } catch (err) {
    if (err instanceof SecretError) throw new UserError(err.message, 2)
    throw err
  }
}

async function readSecret(arg: string | undefined): Promise<FolderKeys> {
  return parseOrExit(await readSecretText(arg))
}

// --- mount ---

/** The network and storage options shared by mount and seed. */
function commonConfig(flags: Record<string, string | boolean>): Omit<SeedConfig, 'relay'> {
  const str = (name: string, env: string): string | null => {
    const value = flags[name] ?? process.env[env]
    return typeof value === 'string' && value !== '' ? value : null
  }
  const bootstrap = str('bootstrap', 'TSYNCFS_BOOTSTRAP')
  let peers: HostPort[] | null = null
  try {
    peers = bootstrap ? parseHostPorts(bootstrap) : null
  } catch (err) {
    throw new UserError(`bad --bootstrap: ${(err as Error).message}`, 2)
  }
  return {
    dataDir: path.resolve(str('data-dir', 'TSYNCFS_DATA_DIR') ?? defaultDataDir()),
    bootstrap: peers,
    bind: str('bind', 'TSYNCFS_BIND'),
    discovery: discoveryConfig(flags)
  }
}

function mountConfig(mountpoint: string, flags: Record<string, string | boolean>): DaemonConfig {
  const readTimeoutSec = Number(flags['read-timeout'] ?? 60)
  if (!(readTimeoutSec > 0)) throw new UserError(`bad --read-timeout "${flags['read-timeout']}": expected seconds > 0`, 2)
  const int = (name: string, radix: number): number | null => {
    if (flags[name] === undefined) return null
    const n = parseInt(String(flags[name]), radix)
    if (!Number.isInteger(n) || n < 0) throw new UserError(`bad --${name} "${flags[name]}"`, 2)
    return n
  }
  return {
    ...commonConfig(flags),
    mountpoint: path.resolve(mountpoint),
    readTimeoutSec,
    allowOther: !!flags['allow-other'],
    readOnly: !!flags.ro,
    uid: int('uid', 10),
    gid: int('gid', 10),
    umask: int('umask', 8),
    cacheSize: cacheSize(flags['cache-size']),
    keepAll: !!flags['keep-all']
  }
}

async function runForeground(keys: FolderKeys, config: DaemonConfig): Promise<void> {
  const daemon = new Daemon(keys, config, makeLogger())
  await daemon.start()
  console.log(`mounted ${keys.folderId} at ${config.mountpoint}`)
}

interface DaemonMessage { ready?: boolean; error?: string; exitCode?: number }

async function runDetached(keys: FolderKeys, secret: string, config: DaemonConfig): Promise<void> {
  // Check what can be checked here, so that bad input fails before a daemon exists.
  if (keys.kind === 'encrypted') throw new UserError('an encrypted secret cannot be mounted: it cannot read names or contents (use it with seed)', 2)
  loadFuse()
  await checkFuseDevice()
  await prepareMountpoint(config.mountpoint)
  const dir = await prepareFolderDir(config.dataDir, keys)
  const logFile = path.join(dir, 'daemon.log')
  const log = openSync(logFile, 'a', 0o600)
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, process.argv[1], '__daemon'], { detached: true, stdio: ['ignore', log, log, 'ipc'], env: daemonEnv() })
  closeSync(log)
  const outcome = await new Promise<DaemonMessage>((resolve) => {
    child.once('message', (msg) => resolve(msg as DaemonMessage))
    child.once('exit', (code) => resolve({ error: `the daemon exited (code ${code}); see ${logFile}` }))
    child.send({ secret, config })
  })
  if (outcome.error) throw new UserError(outcome.error, outcome.exitCode ?? 1)
  child.disconnect()
  child.unref()
  console.log(`mounted ${keys.folderId} at ${config.mountpoint}`)
}

/** glibc gives each thread that allocates its own 64 MiB arena; with libuv's 16 threads
 *  and RocksDB's that cost the daemon about 80 MiB of peak memory for no speed. */
function daemonEnv(): NodeJS.ProcessEnv {
  return { ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2' }
}

function runDaemonChild(): Promise<void> {
  return new Promise((resolve) => {
    process.once('message', (msg: { secret: string; config: DaemonConfig }) => {
      const daemon = new Daemon(parseSecret(msg.secret), msg.config, makeLogger())
      daemon.start().then(
        () => {
          process.send?.({ ready: true })
          process.disconnect?.()
          resolve()
        },
        (err: Error) => {
          const exitCode = err instanceof UserError ? err.exitCode : 1
          process.stderr.write(`${new Date().toISOString()} failed to start: ${err.stack}\n`)
          process.send?.({ error: err.message, exitCode }, () => process.exit(exitCode))
        }
      )
    })
  })
}

function cacheSize(value: string | boolean | undefined): number | null {
  if (value === undefined) return null
  const size = parseSize(String(value))
  if (size === null) throw new UserError(`bad --cache-size "${value}": expected a size like 20G, 512M or 1048576`, 2)
  return size
}

/** The mount a path lies in, and the path inside it. */
async function locate(arg: string | undefined): Promise<{ reg: Registration; rel: string }> {
  if (!arg) throw new UserError('a path inside a tsyncfs mount is needed', 2)
  const abs = path.resolve(arg)
  const reg = (await registrations())
    .filter((r) => abs === r.mountpoint || abs.startsWith(r.mountpoint + '/'))
    .sort((a, b) => b.mountpoint.length - a.mountpoint.length)[0]
  if (!reg) throw new UserError(`${abs} is not inside a tsyncfs mount`)
  return { reg, rel: '/' + path.relative(reg.mountpoint, abs) }
}

interface CacheResult {
  mountpoint: string; limit: number | null; localBytes: number; copyBytes: number; pinnedBytes: number; evictableBytes: number
  hits: number; directHits: number; misses: number; hitRate: number; pins: { paths: string[]; bytesTotal: number; bytesLocal: number }
}

function formatCache(c: CacheResult): string {
  return [
    `mount      ${c.mountpoint}`,
    `limit      ${c.limit === null ? 'none (keep all)' : formatBytes(c.limit)}`,
    `local      ${formatBytes(c.localBytes)} (${formatBytes(c.pinnedBytes)} pinned, ${formatBytes(c.evictableBytes)} evictable)`,
    `copies     ${formatBytes(c.copyBytes)} (copies of read blocks for fast re-reads, within the limit)`,
    `pinned     ${c.pins.paths.join(', ') || '-'}: ${formatBytes(c.pins.bytesLocal)} of ${formatBytes(c.pins.bytesTotal)} local`,
    `hit rate   ${(c.hitRate * 100).toFixed(1)}% (${c.hits} hits, ${c.directHits} of them read outside the event loop; ${c.misses} misses)`
  ].join('\n')
}

// --- status and unmount ---

/** The web UI's HTTP API answers when a `tsyncfs web` runs (issue 8: the CLI uses it);
 *  without one, or if it fails, each daemon is asked over its control socket. */
async function viaWebOr<T>(regs: Registration[], viaWeb: (api: WebApi) => Promise<T[]>, direct: (reg: Registration) => Promise<T>): Promise<T[]> {
  const api = regs.length > 0 ? await WebApi.connect() : null
  if (api) {
    const answers = await viaWeb(api).catch(() => null)
    if (answers && answers.length === regs.length) return answers
  }
  const out: T[] = []
  for (const reg of regs) out.push(await direct(reg))
  return out
}

async function findMount(arg: string): Promise<Registration> {
  const mountpoint = path.resolve(arg)
  const reg = (await registrations()).find((r) => r.mountpoint === mountpoint)
  if (!reg) throw new UserError(`${mountpoint} is not a tsyncfs mount`)
  return reg
}

function userError(err: unknown): never {
  throw err instanceof DaemonError ? new UserError(err.message) : err
}

function unwrap(res: ControlResponse): unknown {
  if (!res.ok) throw new UserError(res.error)
  return res.result
}

async function waitForExit(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (isAlive(pid)) {
    if (Date.now() > deadline) throw new UserError(`daemon ${pid} did not exit in time`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

interface StatusResult {
  folderId: string; kind: string; mountpoint: string; device: string | null; members: number
  peers: Array<{ id: string; address: string; via?: string; verified: boolean }>
  files: number; dirs: number; conflicts: number; bytesTotal: number; bytesLocal: number
}

function formatStatus(s: StatusResult): string {
  return [
    `folder     ${s.folderId} (${s.kind})`,
    `mount      ${s.mountpoint}`,
    `device     ${s.device ?? '(read-only)'}`,
    `members    ${s.members}`,
    `peers      ${s.peers.length}${s.peers.map((p) => `\n  ${p.id} ${(p.via ?? '').padEnd(6)} ${p.address}${p.verified ? '' : ' (unverified)'}`).join('')}`,
    `files      ${s.files} in ${s.dirs} directories, ${s.conflicts} conflicts`,
    `bytes      ${formatBytes(s.bytesLocal)} local of ${formatBytes(s.bytesTotal)}`
  ].join('\n')
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}
