// Where a device keeps its data, and where running daemons can be found.
import os from 'os'
import path from 'path'
import { createHash } from 'crypto'

export function defaultDataDir(): string {
  if (process.env.TSYNCFS_DATA_DIR) return process.env.TSYNCFS_DATA_DIR
  const base = process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share')
  return path.join(base, 'tsyncfs')
}

/** Sockets live here, not in the data dir: a unix socket path must stay short. */
export function runtimeDir(): string {
  if (process.env.TSYNCFS_RUNTIME_DIR) return process.env.TSYNCFS_RUNTIME_DIR
  if (process.env.XDG_RUNTIME_DIR) return path.join(process.env.XDG_RUNTIME_DIR, 'tsyncfs')
  return path.join(os.tmpdir(), `tsyncfs-${process.getuid?.() ?? 0}`)
}

export function mountKey(mountpoint: string): string {
  return createHash('sha256').update(mountpoint).digest('hex').slice(0, 16)
}

export function folderDir(dataDir: string, folderId: string): string {
  return path.join(dataDir, folderId)
}
