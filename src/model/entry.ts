// What each device's log stores per path (as hyperdrive entry metadata).
import { VersionVector } from './version-vector'

export type EntryType = 'file' | 'dir' | 'symlink'

/** Where a file's bytes live: a range of some member's blob core. */
export interface ContentRef {
  core: string // hex key of the blob core
  blockOffset: number
  blockLength: number
  byteOffset: number
  byteLength: number
  blockSize: number // every block but the last is exactly this long
}

export interface Entry {
  type: EntryType
  mode: number // permission bits only
  mtime: number // milliseconds since the epoch
  size: number
  vv: VersionVector
  device: string // the device that wrote this entry
  deleted?: boolean
  content?: ContentRef | null
  hash?: string // sha256 of the content, so equal edits are not conflicts
  target?: string // symlink target
}

export const S_IFREG = 0o100000
export const S_IFDIR = 0o040000
export const S_IFLNK = 0o120000

export function typeBits(type: EntryType): number {
  return type === 'dir' ? S_IFDIR : type === 'symlink' ? S_IFLNK : S_IFREG
}

/** Two entries with the same identity hold the same thing, so they never conflict. */
export function contentIdentity(e: Entry): string {
  if (e.type === 'dir') return 'dir'
  if (e.type === 'symlink') return 'symlink:' + e.target
  return 'file:' + (e.hash ?? '') + ':' + e.size
}

export function isEntry(value: unknown): value is Entry {
  if (!value || typeof value !== 'object') return false
  const e = value as Partial<Entry>
  return (e.type === 'file' || e.type === 'dir' || e.type === 'symlink') &&
    typeof e.mode === 'number' && typeof e.mtime === 'number' && typeof e.size === 'number' &&
    typeof e.device === 'string' && !!e.vv && typeof e.vv === 'object'
}
