// The write-back journal: one append-only file of records, one per closed staged file not
// yet committed, so that a daemon that dies first commits them at its next start. A close
// costs one append, not a file of its own; the file is emptied whenever nothing is pending.
// Records that arrive in one turn of the event loop go out together in one write: many
// files closed at once cost a few writes, not one each in turn.
import { promises as fs, ftruncateSync, writeSync } from 'fs'
import { VersionVector } from './version-vector'

export interface JournalRecord {
  name: string // the staging file's name in the staging directory
  path: string
  mode: number
  mtime: number
  base: VersionVector
  /** A small file's bytes (base64), when it had no staging file */
  data?: string
}

interface VoidRecord {
  name: string
  void: true
}

export class WriteBackJournal {
  private fh: fs.FileHandle | null = null
  private readonly pending = new Set<string>()
  /** Lines not yet handed to an append, and who waits for them. */
  private lines: string[] = []
  private waiting: Array<{ resolve: () => void; reject: (err: unknown) => void }> = []

  constructor(private readonly file: string) {}

  /** The records a previous run left, the newest for each staging file, oldest first. A
   *  record torn by a crash does not parse and is skipped, like a file never closed. */
  async previous(): Promise<Map<string, JournalRecord>> {
    const records = new Map<string, JournalRecord>()
    let text = ''
    try {
      text = await fs.readFile(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err // never lose records silently
    }
    for (const line of text.split('\n')) {
      try {
        const record = JSON.parse(line) as JournalRecord | VoidRecord
        if (typeof record.name !== 'string') continue
        records.delete(record.name) // re-inserted: the map's order is that of the newest records
        if ('path' in record && typeof record.path === 'string') records.set(record.name, record)
      } catch {
        // torn or empty line
      }
    }
    return records
  }

  /** Opens the journal for new records after reading previous(); the records of `pending`
   *  (files still to commit) stay until those are done, the rest with them. */
  async open(pending: string[]): Promise<void> {
    this.fh = await fs.open(this.file, 'a', 0o600)
    for (const name of pending) this.pending.add(name)
    if (this.pending.size === 0) await this.fh.truncate(0)
  }

  record(record: JournalRecord): Promise<void> {
    this.pending.add(record.name)
    return this.append(JSON.stringify(record) + '\n')
  }

  /** The file `name` is committed or deleted: its record is void (the staging file may
   *  outlive it, held open by another handle). */
  done(name: string): Promise<void> {
    if (!this.pending.delete(name)) return Promise.resolve()
    const voided: VoidRecord = { name, void: true }
    return this.append(JSON.stringify(voided) + '\n')
  }

  private append(line: string): Promise<void> {
    if (!this.fh) return Promise.reject(new Error('the write-back journal is not open'))
    return new Promise((resolve, reject) => {
      this.lines.push(line)
      this.waiting.push({ resolve, reject })
      if (this.lines.length === 1) setImmediate(() => this.flush())
    })
  }

  /** Writes every line waiting, or empties the file if no record is pending any more: then
   *  each record ever written, these lines' too, has been voided. Synchronously, once per
   *  turn of the event loop: an append of a few KiB to the page cache costs less than the
   *  thread pool's round trip, and appends and truncations stay in order. */
  private flush(): void {
    const lines = this.lines
    const waiting = this.waiting
    this.lines = []
    this.waiting = []
    if (waiting.length === 0) return
    try {
      if (!this.fh) throw new Error('the write-back journal is not open')
      if (this.pending.size === 0) ftruncateSync(this.fh.fd, 0)
      else writeSync(this.fh.fd, lines.join(''))
      for (const w of waiting) w.resolve()
    } catch (err) {
      for (const w of waiting) w.reject(err)
    }
  }

  async close(): Promise<void> {
    this.flush()
    await this.fh?.close()
    this.fh = null
  }
}
