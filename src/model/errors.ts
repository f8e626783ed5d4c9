// Filesystem errors carry an errno name so the FUSE layer can map them without
// the model knowing anything about FUSE.
export type ErrnoName =
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL'
  | 'EROFS' | 'EIO' | 'EBADF' | 'ENOSPC' | 'EPERM' | 'EXDEV' | 'ENAMETOOLONG' | 'ENODATA' | 'ENOTSUP' | 'EBUSY'

export class FsError extends Error {
  readonly code: ErrnoName

  /** Without a stack: an errno is an answer, not a bug, and every new file's name is
   *  first looked up and not found (its stack had been 2 % of the writing daemon's time). */
  constructor(code: ErrnoName, message?: string) {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message ? `${code}: ${message}` : code)
    Error.stackTraceLimit = limit
    this.code = code
  }
}

export function fail(code: ErrnoName, message?: string): never {
  throw new FsError(code, message)
}
