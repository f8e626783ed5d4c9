// Write-back: an open, written file lives in a local staging file until it is committed,
// then its bytes are appended to this device's blob core in whole blocks. A closed file
// that is not committed yet has a journal record beside it, so that a daemon that dies
// before the commit replays it at the next open.
import { promises as fs } from 'fs'
import path from 'path'
import { FsError } from './errors'
import { VersionVector } from './version-vector'

let counter = 0

const JOURNAL = '.journal'

interface JournalRecord {
  path: string
  mode: number
  mtime: number
  base: VersionVector
}

export class StagedFile {
  dirty = false
  refs = 0
  unlinked = false
  private journaled = false
  // Opened on demand and closed once nothing uses the file: thousands of closed files may
  // wait for their commit at once.
  private fh: Promise<fs.FileHandle> | null = null
  private busy = 0
  private closeWhenIdle = false

  private constructor(
    public path: string,
    public mode: number,
    public mtime: number,
    public size: number,
    /** What this device had seen of the path when the file was opened: if another
     *  device changed it meanwhile, the commit becomes a concurrent version. */
    public base: VersionVector,
    private readonly file: string
  ) {}

  static async create(dir: string, opts: { path: string; mode: number; mtime: number; base: VersionVector }): Promise<StagedFile> {
    const file = path.join(dir, `${process.pid}-${Date.now()}-${counter++}`)
    await (await fs.open(file, 'w', 0o600)).close()
    return new StagedFile(opts.path, opts.mode, opts.mtime, 0, opts.base, file)
  }

  /** The closed files a daemon left uncommitted in `dir`, to commit again. Everything
   *  else there (files never closed, half-written records) is removed: as after any crash,
   *  writes that were never closed are not kept. */
  static async recover(dir: string): Promise<StagedFile[]> {
    const names = await fs.readdir(dir)
    const found: StagedFile[] = []
    for (const name of names.filter((n) => n.endsWith(JOURNAL))) {
      const file = path.join(dir, name.slice(0, -JOURNAL.length))
      try {
        const record = JSON.parse(await fs.readFile(file + JOURNAL, 'utf8')) as JournalRecord
        const { size } = await fs.stat(file)
        const staged = new StagedFile(record.path, record.mode, record.mtime, size, record.base, file)
        staged.dirty = true
        staged.journaled = true
        found.push(staged)
      } catch {
        // A record without its bytes, or torn: nothing that can be committed.
      }
    }
    const kept = new Set(found.flatMap((s) => [s.file, s.file + JOURNAL]))
    for (const name of names) {
      if (!kept.has(path.join(dir, name))) await fs.rm(path.join(dir, name), { force: true })
    }
    return found
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const len = Math.max(0, Math.min(length, this.size - offset))
    const buf = Buffer.alloc(len)
    if (len === 0) return buf
    const { bytesRead } = await this.using((fh) => fh.read(buf, 0, len, offset))
    return buf.subarray(0, bytesRead)
  }

  async write(data: Buffer, offset: number): Promise<number> {
    try {
      const { bytesWritten } = await this.using((fh) => fh.write(data, 0, data.length, offset))
      this.size = Math.max(this.size, offset + bytesWritten)
      this.touch()
      return bytesWritten
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new FsError('ENOSPC')
      throw new FsError('EIO', (err as Error).message)
    }
  }

  async truncate(size: number): Promise<void> {
    await this.using((fh) => fh.truncate(size))
    this.size = size
    this.touch()
  }

  /** The staged bytes in chunks of exactly `blockSize` (the last may be shorter). */
  async *chunks(blockSize: number): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < this.size; offset += blockSize) {
      yield await this.read(offset, blockSize)
    }
  }

  /** Records the file as closed and not yet committed (replayed after a crash). Written
   *  again after a rename, so that a replay commits it under its new name. */
  async writeJournal(): Promise<void> {
    const record: JournalRecord = { path: this.path, mode: this.mode, mtime: this.mtime, base: this.base }
    const tmp = `${this.file}${JOURNAL}.tmp`
    await fs.writeFile(tmp, JSON.stringify(record), { mode: 0o600 })
    await fs.rename(tmp, this.file + JOURNAL)
    this.journaled = true
  }

  async renamed(): Promise<void> {
    if (this.journaled) await this.writeJournal()
  }

  /** Closes the file handle once nothing uses the file (it is reopened when needed). */
  async idle(): Promise<void> {
    if (this.busy > 0) {
      this.closeWhenIdle = true
      return
    }
    const fh = this.fh
    this.fh = null
    await (await fh)?.close()
  }

  async discard(): Promise<void> {
    await this.idle().catch(() => {})
    await fs.rm(this.file, { force: true })
    await fs.rm(this.file + JOURNAL, { force: true })
  }

  private async using<T>(op: (fh: fs.FileHandle) => Promise<T>): Promise<T> {
    this.busy++
    try {
      this.fh ??= fs.open(this.file, 'r+')
      return await op(await this.fh)
    } finally {
      if (--this.busy === 0 && this.closeWhenIdle) {
        this.closeWhenIdle = false
        this.idle().catch(() => {})
      }
    }
  }

  private touch(): void {
    this.dirty = true
    this.mtime = Date.now()
  }
}
