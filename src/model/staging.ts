// Write-back: an open, written file lives in a local staging file until it is committed,
// then its bytes are appended to this device's blob core in whole blocks. A closed file
// that is not committed yet has a record in the write-back journal, so that a daemon that
// dies before the commit replays it at the next open.
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
      if (!names.delete(record.name)) continue
      const { size } = await fs.stat(this.fileOf(record.name))
      recovered.push(StagedFile.fromJournal(this, record, size))
    }
    for (const name of names) await fs.rm(this.fileOf(name), { force: true, recursive: true })
    await this.journal.open(recovered.map((s) => s.nameInArea))
    return recovered
  }

  async create(opts: { path: string; mode: number; mtime: number; base: VersionVector }): Promise<StagedFile> {
    const name = `${process.pid}-${Date.now()}-${counter++}`
    const fh = await fs.open(this.fileOf(name), 'w+', 0o600)
    return new StagedFile(this, name, opts.path, opts.mode, opts.mtime, 0, opts.base, fh)
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

  constructor(
    private readonly area: StagingArea,
    readonly nameInArea: string,
    public path: string,
    public mode: number,
    public mtime: number,
    public size: number,
    /** What this device had seen of the path when the file was opened: if another
     *  device changed it meanwhile, the commit becomes a concurrent version. */
    public base: VersionVector,
    fh: fs.FileHandle | null = null
  ) {
    this.fh = fh ? Promise.resolve(fh) : null
  }

  /** A closed file of a previous run; its record stays (a second crash must find it too). */
  static fromJournal(area: StagingArea, record: JournalRecord, size: number): StagedFile {
    const staged = new StagedFile(area, record.name, record.path, record.mode, record.mtime, size, record.base)
    staged.dirty = true
    staged.journaled = true
    staged.journalFresh = true
    return staged
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
    this.recording = this.area.record({ name: this.nameInArea, path: this.path, mode: this.mode, mtime: this.mtime, base: this.base })
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
    await this.closeHandle().catch(() => {})
    await fs.unlink(this.area.fileOf(this.nameInArea)).catch(() => {})
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
      if (!this.fh) {
        const opening = fs.open(this.area.fileOf(this.nameInArea), 'r+')
        this.fh = opening
        opening.catch(() => { if (this.fh === opening) this.fh = null }) // EMFILE may pass
      }
      return await op(await this.fh)
    } finally {
      if (--this.busy === 0 && this.closeWhenIdle) {
        this.closeWhenIdle = false
        this.closeHandle().catch(() => {})
      }
    }
  }

  private touch(): void {
    this.dirty = true
    this.mtime = Date.now()
    this.journalFresh = false
  }
}
