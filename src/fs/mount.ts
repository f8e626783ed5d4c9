// Mounting and unmounting the folder with fuse-native, and the checks that make a bad
// mountpoint fail with one clear line before anything is half-mounted.
import { promises as fs, constants } from 'fs'
import { execFile } from 'child_process'
import { promisify } from 'util'
import path from 'path'
import type FuseType from 'fuse-native'
import loadAddon from 'node-gyp-build'
import { Folder } from '../model/folder'
import { UserError } from '../user-error'
import { createOps } from './ops'
import { DirectReadBinding, DirectReads } from './direct-reads'
import { StatCache, StatCacheBinding } from './stat-cache'
import { KernelCache, KernelCacheBinding } from './kernel-cache'

const run = promisify(execFile)

export interface MountOptions {
  mountpoint: string
  dataDir: string
  fsName: string
  readOnly: boolean
  allowOther: boolean
  uid: number
  gid: number
  umask: number
  log: (message: string) => void
}

/** fuse-native, or a clear error when libfuse or /dev/fuse is missing. */
export function loadFuse(): typeof FuseType {
  try {
    return require('fuse-native') as typeof FuseType
  } catch (err) {
    throw new UserError(`FUSE is not usable: cannot load fuse-native (is libfuse2 installed? apt-get install libfuse2 fuse3): ${(err as Error).message.split('\n')[0]}`)
  }
}

interface PatchedBinding extends Partial<DirectReadBinding>, StatCacheBinding, KernelCacheBinding {
  /** glibc's malloc_trim(0): returns freed memory to the system. */
  tsyncfs_malloc_trim?: () => void
}

/** fuse-native's addon, as fuse-native loaded it (the same module instance). */
function fuseBinding(): PatchedBinding {
  return loadAddon(path.dirname(require.resolve('fuse-native/package.json'))) as PatchedBinding
}

/**
 * Whether fuse-native runs the addon that scripts/patch-fuse-native.js rebuilt (the prebuilt
 * one stores the access time as the modification time on utimens, and has no stat cache).
 */
export function fuseNativePatched(): boolean {
  return typeof fuseBinding().tsyncfs_stat_cache_clear === 'function'
}

/** glibc's malloc_trim, which Node does not bind; from the patched addon, or undefined. */
export function nativeMallocTrim(): (() => void) | undefined {
  return fuseBinding().tsyncfs_malloc_trim
}

export async function checkFuseDevice(): Promise<void> {
  try {
    await fs.access('/dev/fuse', constants.R_OK | constants.W_OK)
  } catch {
    throw new UserError('FUSE is not usable: /dev/fuse is missing or not accessible')
  }
}

export async function isMountpoint(dir: string): Promise<boolean> {
  const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8')
  return mounts.split('\n').some((line) => unescapeMount(line.split(' ')[4] ?? '') === dir)
}

/** Whether the topmost mount on `dir` is a tsyncfs FUSE mount (live or dead), not someone else's. */
export async function isTsyncfsMount(dir: string): Promise<boolean> {
  const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8')
  const line = mounts.split('\n').filter((l) => unescapeMount(l.split(' ')[4] ?? '') === dir).pop()
  const fields = line?.split(' ') ?? []
  return fields[fields.indexOf('-') + 1] === 'fuse.tsyncfs'
}

function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)))
}

/** Lazily detaches a mount; used for stale mounts of a crashed daemon. */
export async function detach(dir: string, lazy = true): Promise<void> {
  await run('fusermount', [lazy ? '-uz' : '-u', dir])
}

/** Validates a mountpoint; recovers a stale (ENOTCONN) mount of a crashed daemon. */
export async function prepareMountpoint(dir: string): Promise<string> {
  const abs = path.resolve(dir)
  let stat
  try {
    stat = await fs.stat(abs)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOTCONN') {
      await detach(abs)
      return prepareMountpoint(abs)
    }
    if (code === 'ENOENT') throw new UserError(`mountpoint ${abs} does not exist`)
    throw new UserError(`mountpoint ${abs} is not usable: ${code}`)
  }
  if (!stat.isDirectory()) throw new UserError(`mountpoint ${abs} is not a directory`)
  if (await isMountpoint(abs)) throw new UserError(`mountpoint ${abs} is already mounted`)
  if ((await fs.readdir(abs)).length > 0) throw new UserError(`mountpoint ${abs} is not empty`)
  return abs
}

const READ_AHEAD_KIB = 1024

/**
 * Raises the kernel's read-ahead for the mount from its 128 KiB default (the mount option
 * max_readahead can only lower it): a sequential reader then has more 128 KiB requests in
 * flight, which the FUSE threads answer side by side (warm reads 1.0-1.3 s -> 0.77-0.92 s
 * per GiB here). Needs root; a user's mount keeps the default.
 */
async function raiseReadAhead(mountpoint: string): Promise<void> {
  if (process.getuid?.() !== 0) return
  const { dev } = await fs.stat(mountpoint, { bigint: true })
  // glibc's dev_t layout
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn)
  await fs.writeFile(`/sys/class/bdi/${major}:${minor}/read_ahead_kb`, String(READ_AHEAD_KIB))
}

export class FolderMount {
  private fuse: FuseType | null = null

  constructor(private readonly folder: Folder, private readonly opts: MountOptions) {}

  async mount(timeoutMs: number): Promise<void> {
    const Fuse = loadFuse()
    // default_permissions: the kernel checks the modes, uid and gid we show, so that with
    // allow_other the --uid/--gid/--umask options decide who may do what.
    // auto_cache: the kernel keeps file pages between opens and drops them when the size or
    // mtime it sees changes (every new version has a new mtime), so re-reads skip FUSE.
    const binding = fuseBinding()
    const kernel = new KernelCache(binding)
    const extra = ['big_writes', 'max_write=131072', 'default_permissions', 'auto_cache', ...kernel.mountOptions(), `fsname=${this.opts.fsName}`, 'subtype=tsyncfs']
    if (this.opts.readOnly) extra.push('ro')
    // fuse-native's option whitelist drops big_writes; without it writes come 4 KiB at a time.
    class TsyncFuse extends Fuse {
      _fuseOptions(): string {
        const base = super._fuseOptions()
        return (base ? base + ',' : '-o') + extra.join(',')
      }
    }
    // getattr answers from the addon's stat cache until its path changes.
    const stats = new StatCache(binding, (path) => this.folder.exists(path))
    // The addon's stat cache first: a reply computed from it before the change is then
    // counted as racing it, and the kernel view sends it with no time to keep it. A file
    // written here shows its staged stat, which the kernel learnt through the mount, until
    // it is retired (then announced if changed).
    this.folder.onChange((paths) => {
      for (const p of paths) {
        stats.changed(p)
        if (!this.folder.showsStaged(p)) kernel.changed(p, this.folder.exists(p))
      }
    })
    const mirror = DirectReads.available(binding) ? new DirectReads(binding) : null
    const direct = mirror && this.folder.mirrorCopies(mirror) ? mirror : null
    const ops = createOps(this.folder, { uid: this.opts.uid, gid: this.opts.gid, umask: this.opts.umask, dataDir: this.opts.dataDir, log: this.opts.log, stats, direct })
    const fuse = new TsyncFuse(this.opts.mountpoint, ops, {
      // Our own reads are bounded by --read-timeout; a commit of a large file may take long.
      timeout: false,
      allowOther: this.opts.allowOther
    })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new UserError('FUSE mount did not answer in time')), timeoutMs)
      fuse.mount((err) => {
        clearTimeout(timer)
        if (err) reject(new UserError(`cannot mount ${this.opts.mountpoint}: ${err.message}`))
        else resolve()
      })
    })
    this.fuse = fuse
    await raiseReadAhead(this.opts.mountpoint).catch((err) => this.opts.log(`read-ahead left at the kernel's default: ${(err as Error).message}`))
  }

  async unmount(): Promise<void> {
    const fuse = this.fuse
    if (!fuse) return
    this.fuse = null
    await new Promise<void>((resolve) => fuse.unmount(() => resolve()))
  }
}
