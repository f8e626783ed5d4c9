// Filesystem errors carry an errno name so the FUSE layer can map them without
// the model knowing anything about FUSE.
export type ErrnoName =
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL'
  | 'EROFS' | 'EIO' | 'EBADF' | 'ENOSPC' | 'EPERM' | 'EXDEV' | 'ENAMETOOLONG' | 'ENODATA' | 'ENOTSUP' | 'EBUSY'

export class FsError extends Error {
  constructor(readonly code: ErrnoName, message?: string) {
    super(message ? `${code}: ${message}` : code)
  }
}

export function fail(code: ErrnoName, message?: string): never {
  throw new FsError(code, message)
}
