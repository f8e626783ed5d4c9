// One member's log (a hyperdrive): its metadata is replicated eagerly and folded into
// the merged index as it grows; its blob core is left sparse.
import Corestore from 'corestore'
import Hyperdrive from 'hyperdrive'
import Hypercore from 'hypercore'
import { base32Encode } from '../secrets'
import { Entry, isEntry } from './entry'

export function deviceIdOf(driveKey: Buffer): string {
  return base32Encode(driveKey.subarray(0, 10))
}

/** How hyperdrive keys its files in the log (its SubEncoder('files')), as the log's own
 *  history gives them. */
const FILES_PREFIX = 'files\u0000'
/** Several entries written together share one log block, under a key of their own
 *  (outside hyperdrive's files): this device's log length when they were written, and
 *  the record's number among them. */
const GROUP_PREFIX = 'tsyncfs-group\u0000'
const GROUP_RECORD_ENTRIES = 256

/** The records (key and value) that hold `entries`, written together at `logLength`: up
 *  to GROUP_RECORD_ENTRIES `[path, entry]` pairs each. */
export function groupRecords(logLength: number, entries: Array<[string, Entry]>): Array<[string, { entries: Array<[string, Entry]> }]> {
  const records: Array<[string, { entries: Array<[string, Entry]> }]> = []
  for (let i = 0; i * GROUP_RECORD_ENTRIES < entries.length; i++) {
    const key = `${GROUP_PREFIX}${String(logLength).padStart(12, '0')}.${i}`
    records.push([key, { entries: entries.slice(i * GROUP_RECORD_ENTRIES, (i + 1) * GROUP_RECORD_ENTRIES) }])
  }
  return records
}

type EntryListener = (device: string, path: string, entry: Entry) => void

export class MemberDrive {
  readonly deviceId: string
  private indexedVersion = 0
  private syncing: Promise<void> | null = null
  private again = false
  private closed = false

  constructor(
    readonly drive: Hyperdrive<Entry>,
    private readonly onEntry: EntryListener,
    private readonly onSynced: () => void
  ) {
    this.deviceId = deviceIdOf(drive.key)
  }

  static async open(store: Corestore, key: Buffer | null, contentKey: Buffer | null, onEntry: EntryListener, onSynced: () => void, onError: (err: Error) => void): Promise<MemberDrive> {
    const drive = new Hyperdrive<Entry>(store, key, contentKey ? { encryptionKey: contentKey } : {})
    await drive.ready()
    const member = new MemberDrive(drive, onEntry, onSynced)
    if (!drive.writable) {
      // Metadata is eager: every name, size and mtime is on this disk before anyone asks.
      drive.core.download({ start: 0, end: -1 })
      const sync = () => { member.sync().catch(onError) }
      drive.core.on('append', sync)
      drive.core.on('download', sync)
    }
    await member.sync()
    return member
  }

  get key(): Buffer {
    return this.drive.key
  }

  async blobCore(): Promise<Hypercore> {
    return (await this.drive.getBlobs()).core
  }

  /** Folds everything appended since the last sync into the index. */
  sync(): Promise<void> {
    if (this.syncing) {
      this.again = true
      return this.syncing
    }
    this.syncing = this.run().finally(() => {
      this.syncing = null
      if (this.again && !this.closed) {
        this.again = false
        this.sync().catch(() => {})
      }
    })
    return this.syncing
  }

  private async run(): Promise<void> {
    // Only what is on this disk, and only whole: a batch still arriving (a rename is one)
    // shows all at once, and reading past the contiguous length would wait on peers.
    const core = this.drive.core
    if (core.contiguousLength < core.length) return
    const version = core.length
    if (version <= this.indexedVersion || this.closed) return
    // The log's new blocks in order, not a diff of two trees: each block is one put (one
    // entry, or a record of many), so this reads each once, where a diff also reads the
    // old tree's nodes beside them. An older put of a path is folded in before its newer
    // one, which replaces it.
    // (A checkout of the log's tree, not the live log: that would first ask the peers for
    // its length.)
    const snapshot = this.drive.db.checkout(version)
    try {
      for await (const { type, key, value } of snapshot.createHistoryStream({ gte: Math.max(1, this.indexedVersion), lt: version })) {
        if (type !== 'put') continue
        if (key.startsWith(FILES_PREFIX)) this.take(key.slice(FILES_PREFIX.length), value?.metadata)
        else if (key.startsWith(GROUP_PREFIX) && Array.isArray(value?.entries)) {
          for (const item of value.entries) if (Array.isArray(item)) this.take(item[0], item[1])
        }
      }
    } finally {
      await snapshot.close()
    }
    this.indexedVersion = version
    this.onSynced()
  }

  /** A peer's log is not trusted to be well formed: only absolute paths with entries count. */
  private take(path: unknown, entry: unknown): void {
    if (typeof path === 'string' && path.startsWith('/') && isEntry(entry)) this.onEntry(this.deviceId, path, entry)
  }

  async close(): Promise<void> {
    this.closed = true
    await this.drive.close()
  }
}
