// Write-back: an open, written file lives in a local staging file until it is committed,
// then its bytes are appended to this device's blob core in whole blocks. A closed file
// that is not committed yet has a record in the write-back journal, so that a daemon that
// dies before the commit replays it at the next open.
// A small file stays in memory instead, and its journal record carries its bytes: it then
// costs no file of its own (open, write, read back, close and unlink, each a trip through
// the thread pool), which is most of what a new small file cost.
import { promises as fs } from 'fs'
import path from 'path'
import { FsError } from './errors'
import { JournalRecord, WriteBackJournal } from './journal'
import { VersionVector } from './version-vector'

let counter = 0

// Closed files waiting for their commit keep their file open up to this many at once;
// beyond, they close it and reopen it for the commit.
const MAX_IDLE_OPEN = 256
let idleOpen = 0

/** Files up to this size stay in memory; a write past it moves the file to disk. */
export const IN_MEMORY_MAX = 16 * 1024

/** The staging directory and its journal. */
export class StagingArea {
  private readonly journal: WriteBackJournal

  constructor(private readonly dir: string, journalFile: string) {
    this.journal = new WriteBackJournal(journalFile)
  }

  /** Opens the area; with `recover`, returns the files a previous run closed and did not
   *  commit, to commit again. Everything else there (files never closed) is removed: as after any
   *  crash, writes that were never closed are not kept. */
  async open(recover: boolean): Promise<StagedFile[]> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 })
    if (!recover) return []
    const records = await this.journal.previous()
    const names = new Set(await fs.readdir(this.dir))
    const recovered: StagedFile[] = []
    // In the journal's order: of two closed versions of one path, the later is committed last.
    for (const record of records.values()) {
      if (typeof record.data === 'string') {
        names.delete(record.name) // a file that moved to disk after this record: not closed since
        recovered.push(StagedFile.fromJournal(this, record, Buffer.from(record.data, 'base64')))
        continue
      }
      if (!names.delete(record.name)) continue
      const { size } = await fs.stat(this.fileOf(record.name))
      recovered.push(StagedFile.fromJournal(this, record, size))
    }
    for (const name of names) await fs.rm(this.fileOf(name), { force: true, recursive: true })
    await this.journal.open(recovered.map((s) => s.nameInArea))
    return recovered
  }

  /** A new, empty staged file, in memory until it grows past IN_MEMORY_MAX. */
  create(opts: { path: string; mode: number; mtime: number; base: VersionVector }): StagedFile {
    const name = `${process.pid}-${Date.now()}-${counter++}`
    return new StagedFile(this, name, opts.path, opts.mode, opts.mtime, opts.base, Buffer.alloc(0))
  }

  close(): Promise<void> {
    return this.journal.close()
  }

  fileOf(name: string): string {
    return path.join(this.dir, name)
  }

  record(record: JournalRecord): Promise<void> {
    return this.journal.record(record)
  }

  forget(name: string): Promise<void> {
    return this.journal.done(name)
  }
}

export class StagedFile {
  dirty = false
  refs = 0
  unlinked = false
  private journaled = false
  private journalFresh = false // the journal's record describes the current bytes
  private recording: Promise<void> = Promise.resolve() // the last record's append
  private fh: Promise<fs.FileHandle> | null
  private busy = 0
  private closeWhenIdle = false
  private countedIdle = false
  /** The bytes, while the file is small (its capacity may exceed `size`); null once on disk. */
  private memory: Buffer | null
  size = 0

  constructor(
    private readonly area: StagingArea,
    readonly nameInArea: string,
    public path: string,
    public mode: number,
    public mtime: number,
    /** What this device had seen of the path when the file was opened: if another
     *  device changed it meanwhile, the commit becomes a concurrent version. */
    public base: VersionVector,
    /** The bytes, for a file in memory; null: in its staging file. */
    memory: Buffer | null
  ) {
    this.fh = null
    this.memory = memory
    this.size = memory?.length ?? 0
  }

  /** A closed file of a previous run, in its staging file (its size) or in the record (its
   *  bytes); the record stays (a second crash must find it too). */
  static fromJournal(area: StagingArea, record: JournalRecord, content: number | Buffer): StagedFile {
    const staged = new StagedFile(area, record.name, record.path, record.mode, record.mtime, record.base, typeof content === 'number' ? null : content)
    if (typeof content === 'number') staged.size = content
    staged.dirty = true
    staged.journaled = true
    staged.journalFresh = true
    return staged
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const len = Math.max(0, Math.min(length, this.size - offset))
    const buf = Buffer.alloc(len)
    if (len === 0) return buf
    if (this.memory) {
      this.memory.copy(buf, 0, offset, offset + len)
      return buf
    }
    const { bytesRead } = await this.using((fh) => fh.read(buf, 0, len, offset))
    return buf.subarray(0, bytesRead)
  }

  async write(data: Buffer, offset: number): Promise<number> {
    const end = offset + data.length
    if (this.memory && end <= IN_MEMORY_MAX) {
      this.resize(Math.max(this.size, end))
      data.copy(this.memory, offset)
      this.touch()
      return data.length
    }
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
    if (this.memory && size <= IN_MEMORY_MAX) this.resize(size)
    else await this.using((fh) => fh.truncate(size))
    this.size = size
    this.touch()
  }

  /** An in-memory file's new size; bytes past the old size read as zeros. */
  private resize(size: number): void {
    const memory = this.memory!
    if (size > memory.length) {
      const grown = Buffer.alloc(Math.min(IN_MEMORY_MAX, Math.max(size, memory.length * 2, 256)))
      memory.copy(grown, 0, 0, this.size)
      this.memory = grown
    } else if (size < this.size) {
      memory.fill(0, size, this.size)
    }
    this.size = size
  }

  /** The staged bytes in chunks of exactly `blockSize` (the last may be shorter). */
  async *chunks(blockSize: number, size: number): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < size; offset += blockSize) {
      yield await this.read(offset, Math.min(blockSize, size - offset))
    }
  }

  /** Records the file as closed and not yet committed (replayed after a crash); again
   *  after a rename, so that a replay commits it under its new name. */
  writeJournal(): Promise<void> {
    if (this.journalFresh) return this.recording // another close wrote it: wait until it is on disk
    this.journaled = true
    this.journalFresh = true
    const data = this.memory?.toString('base64', 0, this.size)
    this.recording = this.area.record({ name: this.nameInArea, path: this.path, mode: this.mode, mtime: this.mtime, base: this.base, data })
    this.recording.catch(() => { this.journalFresh = false })
    return this.recording
  }

  async renamed(): Promise<void> {
    this.journalFresh = false
    if (this.journaled) await this.writeJournal()
  }

  /** Committed (or deleted): its journal record is void. */
  async committed(): Promise<void> {
    if (!this.journaled) return
    this.journaled = false
    this.journalFresh = false
    await this.area.forget(this.nameInArea)
  }

  /** Nothing holds the file now; its commit may still read it. Past MAX_IDLE_OPEN such
   *  files, the handle is closed (and reopened when needed). */
  async idle(): Promise<void> {
    if (!this.fh || this.countedIdle) return
    if (idleOpen < MAX_IDLE_OPEN) {
      this.countedIdle = true
      idleOpen++
      return
    }
    await this.closeHandle()
  }

  async discard(): Promise<void> {
    if (!this.memory) {
      await this.closeHandle().catch(() => {})
      await fs.unlink(this.area.fileOf(this.nameInArea)).catch(() => {})
    }
    await this.committed()
  }

  private async closeHandle(): Promise<void> {
    if (this.busy > 0) {
      this.closeWhenIdle = true
      return
    }
    if (this.countedIdle) {
      this.countedIdle = false
      idleOpen--
    }
    const fh = this.fh
    this.fh = null
    await (await fh)?.close()
  }

  private async using<T>(op: (fh: fs.FileHandle) => Promise<T>): Promise<T> {
    this.busy++
    try {
      return await op(await this.handle())
    } finally {
      if (--this.busy === 0 && this.closeWhenIdle) {
        this.closeWhenIdle = false
        this.closeHandle().catch(() => {})
      }
    }
  }

  private handle(): Promise<fs.FileHandle> {
    if (this.memory) return this.moveToDisk()
    if (!this.fh) {
      const opening = fs.open(this.area.fileOf(this.nameInArea), 'r+')
      this.fh = opening
      opening.catch(() => { if (this.fh === opening) this.fh = null }) // EMFILE may pass
    }
    return this.fh
  }

  /** Writes an in-memory file to its staging file, which holds it from then on. Until that
   *  is done the other operations wait for the handle; if it fails, the file stays in memory. */
  private moveToDisk(): Promise<fs.FileHandle> {
    const memory = this.memory!
    const bytes = memory.subarray(0, this.size)
    this.memory = null
    const opening = fs.open(this.area.fileOf(this.nameInArea), 'w+', 0o600).then(async (fh) => {
      try {
        if (bytes.length) await fh.write(bytes, 0, bytes.length, 0)
        return fh
      } catch (err) {
        await fh.close().catch(() => {})
        throw err
      }
    })
    this.fh = opening
    opening.catch(() => {
      if (this.fh !== opening) return
      this.fh = null
      this.memory = memory
    })
    return opening
  }

  private touch(): void {
    this.dirty = true
    this.mtime = Date.now()
    this.journalFresh = false
  }
}
