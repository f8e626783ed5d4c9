// The daemon serving one mounted folder: storage, model, network, FUSE and the control
// socket, started in that order and stopped in reverse.
import { promises as fs, constants } from 'fs'
import path from 'path'
import net from 'net'
import Corestore from 'corestore'
import { FolderKeys } from '../secrets'
import { Folder } from '../model/folder'
import { Discovery, FolderNetwork, HostPort } from '../swarm/network'
import { FolderMount, checkFuseDevice, fuseNativePatched, detach, isMountpoint, loadFuse, nativeMallocTrim, prepareMountpoint } from '../fs/mount'
import { UserError } from '../user-error'
import { folderDir } from './paths'
import { openStore } from './store'
import { useFrugalHeap } from './heap'
import { isAlive, register, registrationPaths, registrations, serve, unregister } from './control'
import { TransferMeter } from './transfer-meter'
import { ActivityLog } from './activity'
import { UiCommands } from './ui-commands'

export interface DaemonConfig {
  mountpoint: string
  dataDir: string
  bootstrap: HostPort[] | null
  bind: string | null
  discovery: Discovery
  readTimeoutSec: number
  allowOther: boolean
  readOnly: boolean // mount read-only even with a read-write secret
  uid: number | null // owner shown for every file (default: the daemon's)
  gid: number | null
  umask: number | null // permission bits to hide from the modes shown
  cacheSize: number | null // bytes; null: 10 GiB, or half the free space if that is less
  keepAll: boolean
}

const DEFAULT_CACHE = 10 * 1024 ** 3

async function defaultCacheSize(dir: string): Promise<number> {
  const disk = await fs.statfs(dir)
  return Math.min(DEFAULT_CACHE, Math.floor((disk.bavail * disk.bsize) / 2))
}

export type Logger = (message: string) => void

export function makeLogger(): Logger {
  return (message) => process.stderr.write(`${new Date().toISOString()} ${message}\n`)
}

/** Creates the folder's state dir (0700) or fails with a clear line. */
export async function prepareFolderDir(dataDir: string, keys: FolderKeys): Promise<string> {
  const dir = folderDir(path.resolve(dataDir), keys.folderId)
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 })
    await fs.access(dir, constants.W_OK)
  } catch (err) {
    let reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    // A recursive mkdir says ENOENT on a read-only file system: ask the nearest existing ancestor.
    if (reason === 'ENOENT') reason = await ancestorError(path.dirname(dir)) ?? reason
    throw new UserError(`data dir ${dataDir} is not writable: ${reason}`)
  }
  return dir
}

async function ancestorError(dir: string): Promise<string | null> {
  try {
    await fs.access(dir, constants.W_OK)
    return null
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? null
    return code === 'ENOENT' && path.dirname(dir) !== dir ? ancestorError(path.dirname(dir)) : code
  }
}

export class Daemon {
  private store: Corestore | null = null
  private folder: Folder | null = null
  private network: FolderNetwork | null = null
  private fuseMount: FolderMount | null = null
  private control: net.Server | null = null
  private watchdog: NodeJS.Timeout | null = null
  private stopping: Promise<void> | null = null
  private unmountRequested = false // the watchdog leaves an asked-for unmount to its request
  private dir = ''
  private mountpoint = ''
  private unlock: (() => Promise<void>) | null = null
  private readonly meter = new TransferMeter()
  private readonly activity = new ActivityLog()

  constructor(private readonly keys: FolderKeys, private readonly config: DaemonConfig, private readonly log: Logger) {}

  async start(): Promise<void> {
    if (this.keys.kind === 'encrypted') throw new UserError('an encrypted secret cannot be mounted: it cannot read names or contents (use it with seed)', 2)
    loadFuse()
    useFrugalHeap(nativeMallocTrim())
    if (!fuseNativePatched()) this.log('warning: fuse-native was installed without its patch (npm ran no install scripts): utimens will set mtimes wrong; see README, "Installing"')
    await checkFuseDevice()
    this.mountpoint = await prepareMountpoint(this.config.mountpoint)
    this.dir = await prepareFolderDir(this.config.dataDir, this.keys)
    this.unlock = await lockFolderDir(this.dir, this.keys.folderId)
    try {
      await this.startParts()
    } catch (err) {
      await this.stop().catch(() => {})
      throw err
    }
  }

  private async startParts(): Promise<void> {
    const { keys, config, log } = this
    this.store = openStore(this.dir)
    await this.store.ready()
    this.meter.attach(this.store)
    this.folder = new Folder({ store: this.store, keys, dir: this.dir, readTimeoutMs: config.readTimeoutSec * 1000, readOnly: config.readOnly,
      cacheLimit: config.cacheSize ?? await defaultCacheSize(this.dir), keepAll: config.keepAll })
    this.folder.on('warning', (err: Error) => log(`warning: ${err.message}`))
    this.folder.on('member', () => log('a new member joined the folder'))
    this.folder.on('recovered', (paths: string[]) => log(`committing ${paths.length} closed file(s) that the last run had not committed: ${paths.slice(0, 5).join(', ')}`))
    await this.folder.open()
    this.network = new FolderNetwork(keys, this.store, this.folder, { bootstrap: config.bootstrap, bind: config.bind, ...config.discovery }, log)
    await this.network.start()
    this.fuseMount = new FolderMount(this.folder, {
      mountpoint: this.mountpoint, dataDir: this.dir, fsName: `tsyncfs:${keys.folderId}`,
      readOnly: !this.folder.writable, allowOther: config.allowOther,
      uid: config.uid ?? process.getuid?.() ?? 0, gid: config.gid ?? process.getgid?.() ?? 0, umask: config.umask ?? 0, log
    })
    await this.fuseMount.mount(30000)
    this.activity.watch(this.folder, () => this.network?.peerList() ?? [])
    const ui = new UiCommands(keys, this.folder, this.activity, this.meter)
    const { socket } = registrationPaths(this.mountpoint)
    this.control = await serve(socket, async (req) => {
      const answer = ui.handle(req)
      if (answer) return answer
      if (req.cmd === 'status') return this.status()
      if (req.cmd === 'cache') return this.cacheStatus()
      if (req.cmd === 'pin' || req.cmd === 'unpin') {
        const p = req.path ?? ''
        await (req.cmd === 'pin' ? this.folder!.pin(p) : this.folder!.unpin(p))
        return this.cacheStatus()
      }
      if (req.cmd === 'unmount') {
        this.unmountRequested = true
        try {
          await this.releaseMount(!!req.lazy)
        } finally {
          this.unmountRequested = false
        }
        setImmediate(() => this.shutdown(0))
        return { unmounted: this.mountpoint }
      }
      throw new Error('unknown command')
    })
    await register({ mountpoint: this.mountpoint, pid: process.pid, socket, folderId: keys.folderId, dataDir: path.resolve(config.dataDir) })
    // `umount DIR` from outside ends the FUSE session without telling us: notice it. Not
    // while `tsyncfs unmount` detaches: stopping then could exit before its answer is sent.
    this.watchdog = setInterval(() => {
      if (this.unmountRequested) return
      isMountpoint(this.mountpoint).then((mounted) => { if (!mounted && !this.unmountRequested) this.shutdown(0) }, () => {})
    }, 1000)
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => this.shutdown(0))
    // A crash would leave the mountpoint dead (ENOTCONN): log stray errors and serve on.
    process.on('unhandledRejection', (err) => log(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`))
    process.on('uncaughtException', (err) => log(`uncaught exception: ${err.stack ?? String(err)}`))
    log(`mounted folder ${keys.folderId} (${keys.kind}) at ${this.mountpoint}`)
  }

  async status(): Promise<Record<string, unknown>> {
    const folder = this.folder!
    const totals = folder.totals()
    return {
      folderId: this.keys.folderId,
      kind: this.keys.kind,
      mountpoint: this.mountpoint,
      dataDir: path.resolve(this.config.dataDir),
      device: folder.deviceId,
      pid: process.pid,
      members: folder.memberDevices().length,
      peers: this.network?.peerList() ?? [],
      files: totals.files,
      dirs: totals.dirs,
      conflicts: totals.conflicts,
      bytesTotal: totals.bytes,
      bytesLocal: await folder.localBytes(),
      partial: await folder.partialFiles(100),
      pins: (await folder.cacheStatus()).pins
    }
  }

  async cacheStatus(): Promise<Record<string, unknown>> {
    const stats = await this.folder!.cacheStatus()
    // Infinity (keep-all) does not survive JSON.
    return { ...stats, limit: Number.isFinite(stats.limit) ? stats.limit : null, keepAll: this.config.keepAll }
  }

  /** Unmounts; a busy mount is refused unless `lazy`. */
  private async releaseMount(lazy: boolean): Promise<void> {
    try {
      await detach(this.mountpoint, lazy)
    } catch (err) {
      if (await isMountpoint(this.mountpoint)) {
        throw new Error(`${this.mountpoint} is busy (close what uses it, or unmount with --lazy)`)
      }
    }
  }

  shutdown(code: number): void {
    this.stop().then(() => process.exit(code), (err) => {
      this.log(`error while stopping: ${(err as Error).message}`)
      process.exit(1)
    })
  }

  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.stopParts()
    return this.stopping
  }

  private async stopParts(): Promise<void> {
    if (this.watchdog) clearInterval(this.watchdog)
    this.meter.stop()
    this.activity.stop()
    // Pending writes are committed before the mount goes away.
    await this.folder?.close().catch((err) => this.log(`closing folder: ${err.message}`))
    await this.fuseMount?.unmount().catch(() => {})
    if (this.mountpoint && await isMountpoint(this.mountpoint).catch(() => false)) await detach(this.mountpoint).catch(() => {})
    this.control?.close()
    if (this.mountpoint) await unregister(this.mountpoint)
    await this.network?.stop().catch(() => {})
    await this.store?.close().catch(() => {})
    await this.unlock?.()
    this.log('stopped')
  }

}

/** One process per folder and data dir: a second mount or seed of one folder is refused. */
export async function lockFolderDir(dir: string, folderId: string): Promise<() => Promise<void>> {
  const pidFile = path.join(dir, 'daemon.pid')
  const other = Number(await fs.readFile(pidFile, 'utf8').catch(() => ''))
  if (other && other !== process.pid && isAlive(other)) {
    const mount = (await registrations()).find((r) => r.pid === other)
    const where = mount ? `mounted at ${mount.mountpoint}` : `in use (seeded) from ${path.dirname(dir)}`
    throw new UserError(`folder ${folderId} is already ${where} (pid ${other})`)
  }
  await fs.writeFile(pidFile, String(process.pid), { mode: 0o600 })
  return () => fs.rm(pidFile, { force: true })
}
