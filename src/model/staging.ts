// Write-back: an open, written file lives in a local staging file until it is flushed,
// then its bytes are appended to this device's blob core in whole blocks.
import { promises as fs } from 'fs'
import path from 'path'
import { FsError } from './errors'
import { VersionVector } from './version-vector'

let counter = 0

export class StagedFile {
  dirty = false
  refs = 0
  unlinked = false

  private constructor(
    public path: string,
    public mode: number,
    public mtime: number,
    public size: number,
    /** What this device had seen of the path when the file was opened: if another
     *  device changed it meanwhile, the flush becomes a concurrent version. */
    public base: VersionVector,
    private readonly file: string,
    private readonly fh: fs.FileHandle
  ) {}

  static async create(dir: string, opts: { path: string; mode: number; mtime: number; base: VersionVector }): Promise<StagedFile> {
    const file = path.join(dir, `${process.pid}-${Date.now()}-${counter++}`)
    const fh = await fs.open(file, 'w+', 0o600)
    return new StagedFile(opts.path, opts.mode, opts.mtime, 0, opts.base, file, fh)
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const len = Math.max(0, Math.min(length, this.size - offset))
    const buf = Buffer.alloc(len)
    if (len === 0) return buf
    const { bytesRead } = await this.fh.read(buf, 0, len, offset)
    return buf.subarray(0, bytesRead)
  }

  async write(data: Buffer, offset: number): Promise<number> {
    try {
      const { bytesWritten } = await this.fh.write(data, 0, data.length, offset)
      this.size = Math.max(this.size, offset + bytesWritten)
      this.touch()
      return bytesWritten
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new FsError('ENOSPC')
      throw new FsError('EIO', (err as Error).message)
    }
  }

  async truncate(size: number): Promise<void> {
    await this.fh.truncate(size)
    this.size = size
    this.touch()
  }

  /** The staged bytes in chunks of exactly `blockSize` (the last may be shorter). */
  async *chunks(blockSize: number): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < this.size; offset += blockSize) {
      yield await this.read(offset, blockSize)
    }
  }

  async discard(): Promise<void> {
    await this.fh.close().catch(() => {})
    await fs.rm(this.file, { force: true })
  }

  private touch(): void {
    this.dirty = true
    this.mtime = Date.now()
  }
}
