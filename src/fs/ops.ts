// FUSE operations: each one only translates to a call on the folder model and maps
// the model's errors to errno values.
import { constants } from 'os'
import { promises as fs } from 'fs'
import { Folder, Stat, opensForWrite } from '../model/folder'
import { FsError } from '../model/errors'
import { DirectReads } from './direct-reads'
import { FuseStat, StatCache } from './stat-cache'

type Callback = (...args: never[]) => void
type Reply = (...args: unknown[]) => void

export interface OpsOptions {
  uid: number
  gid: number
  umask: number
  dataDir: string // statfs reports the disk that holds the cache
  log: (message: string) => void
  /** The addon's stat cache: told each stat given, and each path an operation may change. */
  stats: StatCache
  /** Reads the addon answers itself from the read copies, when the addon can. */
  direct: DirectReads | null
}

// Negative errno values, as fuse-native's constants are; not taken from fuse-native itself,
// so loading the CLI does not load libfuse (its absence must be one clear line, not a crash).
const ERRNO: Record<string, number> = Object.fromEntries(Object.entries(constants.errno).map(([name, n]) => [name, -n]))

/** Maps a model error to its errno. An I/O error is the daemon's failure, not the
 *  caller's: it is logged with why, at most once a second per mount. */
function errnoMapper(log: (m: string) => void): (err: unknown) => number {
  let lastIoErrorLog = 0
  return (err) => {
    if (err instanceof FsError) {
      if (err.code === 'EIO' && Date.now() - lastIoErrorLog > 1000) {
        lastIoErrorLog = Date.now()
        log(`I/O error: ${err.message}`)
      }
      return ERRNO[err.code] ?? ERRNO.EIO
    }
    log(`unexpected error: ${(err as Error)?.stack ?? String(err)}`)
    return ERRNO.EIO
  }
}

export function createOps(folder: Folder, opts: OpsOptions): Record<string, Callback> {
  const toStat = (s: Stat): FuseStat => {
    const date = new Date(s.mtime)
    return {
      mode: s.mode & ~opts.umask, size: s.size, uid: opts.uid, gid: opts.gid,
      nlink: s.type === 'dir' ? 2 : 1, mtime: date, atime: date, ctime: date,
      blksize: 4096, blocks: Math.ceil(s.size / 512)
    }
  }

  const errno = errnoMapper(opts.log)
  /** Runs a model call; replies with its result, or with the errno it failed with. */
  const call = <T>(cb: Callback, fn: () => T | Promise<T>, reply: (cb: Reply, value: T) => void) => {
    const done = cb as unknown as Reply
    Promise.resolve().then(fn).then(
      (value) => reply(done, value),
      (err) => done(errno(err))
    )
  }
  /** `call` for an operation that may change `path` (null: paths anywhere): the stat the
   *  addon holds for it is forgotten before the reply. */
  const change = (path: string | null) => <T>(cb: Callback, fn: () => T | Promise<T>, reply: (cb: Reply, value: T) => void) =>
    call(cb, async () => {
      try {
        return await fn()
      } finally {
        opts.stats.changed(path)
      }
    }, reply)
  /** `change` for a handle that may change its file, `call` for one that only reads: a
   *  reader's open and close keep the stats the addon holds. */
  const throughHandle = (fd: number, path: string) => (folder.changesThrough(fd) ? change(path) : call)
  /** The stat of `path`, also kept by the addon for the getattr calls that follow. */
  const statOf = (path: string) => opts.stats.put(path, toStat(folder.stat(path)))
  const ok = (cb: Reply) => cb(0)
  const withValue = <T>(cb: Reply, value: T) => cb(0, value)
  const count = (cb: Reply, n: number) => cb(n)

  return {
    init: (cb: Callback) => (cb as unknown as Reply)(0),
    access: (path: string, _mode: number, cb: Callback) => call(cb, () => folder.stat(path), ok),
    getattr: (path: string, cb: Callback) => call(cb, () => statOf(path), withValue),
    fgetattr: (path: string, _fd: number, cb: Callback) => call(cb, () => statOf(path), withValue),
    // With their stats, which fuse-native's patched addon keeps for the getattr calls that
    // follow (ls -l, find): one round trip for a directory, not one per entry.
    readdir: (path: string, cb: Callback) => call(cb, () => {
      const { names, stats } = folder.listing(path)
      opts.stats.listed(path, names)
      return { names, stats: opts.stats.forReaddir(stats.map(toStat)) }
    }, (done, { names, stats }) => done(0, names, stats)),
    readlink: (path: string, cb: Callback) => call(cb, () => folder.readlink(path), withValue),
    statfs: (_path: string, cb: Callback) => call(cb, () => statfs(folder, opts.dataDir), withValue),
    open: (path: string, flags: number, cb: Callback) => (opensForWrite(flags) ? change(path) : call)(cb, async () => {
      const fd = await folder.openFile(path, flags)
      opts.direct?.open(fd, folder.copyRange(fd))
      return fd
    }, withValue),
    // libfuse asks for the new file's stat right after: kept after the change's forget, the
    // addon answers it.
    create: (path: string, mode: number, cb: Callback) => change(path)(cb, () => folder.create(path, mode), (done, fd) => {
      try {
        statOf(path)
      } catch {} // then JavaScript answers that getattr
      done(0, fd)
    }),
    read: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Callback) =>
      call(cb, () => folder.read(fd, pos, buf.subarray(0, len)), count),
    // libfuse owns `buf`: copy it before the callback returns it.
    write: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Callback) =>
      change(path)(cb, () => folder.write(fd, Buffer.from(buf.subarray(0, len)), pos), count),
    flush: (path: string, fd: number, cb: Callback) => throughHandle(fd, path)(cb, () => folder.flush(fd), ok),
    fsync: (path: string, _datasync: number, fd: number, cb: Callback) => change(path)(cb, () => folder.fsync(fd), ok),
    fsyncdir: (_path: string, _datasync: number, _fd: number, cb: Callback) => (cb as unknown as Reply)(0),
    release: (path: string, fd: number, cb: Callback) => throughHandle(fd, path)(cb, () => {
      opts.direct?.release(fd)
      return folder.release(fd)
    }, ok),
    truncate: (path: string, size: number, cb: Callback) => change(path)(cb, () => folder.truncate(path, size), ok),
    ftruncate: (path: string, _fd: number, size: number, cb: Callback) => change(path)(cb, () => folder.truncate(path, size), ok),
    unlink: (path: string, cb: Callback) => change(path)(cb, () => folder.unlink(path), ok),
    // The new directory's listing (empty, unless a peer was quicker) answers the lookups of
    // the names about to be created there.
    mkdir: (path: string, mode: number, cb: Callback) => change(path)(cb, () => folder.mkdir(path, mode), (done) => {
      try {
        opts.stats.listed(path, folder.readdir(path))
      } catch {} // gone already: its lookups go to JavaScript
      done(0)
    }),
    rmdir: (path: string, cb: Callback) => change(path)(cb, () => folder.rmdir(path), ok),
    rename: (src: string, dst: string, cb: Callback) => change(null)(cb, () => folder.rename(src, dst), ok),
    symlink: (target: string, path: string, cb: Callback) => change(path)(cb, () => folder.symlink(target, path), ok),
    link: (_src: string, _dst: string, cb: Callback) => (cb as unknown as Reply)(ERRNO.EPERM),
    // user.tsyncfs.local: how much of a file is on this disk, e.g. "1048576/4194304 bytes (25.0%)"
    getxattr: (path: string, name: string, _position: number, cb: Callback) => call(cb, async () => {
      if (name !== LOCAL_XATTR) return null
      return Buffer.from(formatLocal(await folder.localOf(path)))
    }, withValue),
    listxattr: (path: string, cb: Callback) => call(cb, () => folder.stat(path).type === 'file' ? [LOCAL_XATTR] : [], withValue),
    setxattr: (_path: string, _name: string, _value: Buffer, _position: number, _flags: number, cb: Callback) => (cb as unknown as Reply)(ERRNO.ENOTSUP),
    removexattr: (_path: string, _name: string, cb: Callback) => (cb as unknown as Reply)(ERRNO.ENOTSUP),
    chmod: (path: string, mode: number, cb: Callback) => change(path)(cb, () => folder.chmod(path, mode), ok),
    // Ownership is per device (the mount's uid/gid), so chown succeeds without effect.
    chown: (path: string, _uid: number, _gid: number, cb: Callback) => call(cb, () => folder.stat(path), ok),
    utimens: (path: string, _atime: number, mtime: number, cb: Callback) => change(path)(cb, () => folder.utimens(path, mtime), ok)
  }
}

const LOCAL_XATTR = 'user.tsyncfs.local'

function formatLocal({ local, size }: { local: number; size: number }): string {
  const percent = size === 0 ? 100 : (local / size) * 100
  return `${local}/${size} bytes (${percent.toFixed(1)}%)`
}

async function statfs(folder: Folder, dataDir: string) {
  const disk = await fs.statfs(dataDir)
  const unit = 4096
  const scale = disk.bsize / unit
  const { files } = folder.totals()
  const clamp = (n: number) => Math.min(Math.floor(n), 0xffffffff)
  return {
    bsize: unit, frsize: unit,
    blocks: clamp(disk.blocks * scale), bfree: clamp(disk.bfree * scale), bavail: clamp(disk.bavail * scale),
    files: clamp(files + disk.ffree), ffree: clamp(disk.ffree), favail: clamp(disk.ffree),
    fsid: 0, flag: 0, namemax: 255
  }
}
