// Recent events of a folder for the web UI: peers coming and going, members joining,
// files changing, conflicts appearing. A ring buffer; nothing is persisted.
import { Folder } from '../model/folder'
import { VisibleNode } from '../model/merged-index'
import { Entry, contentIdentity } from '../model/entry'

export type ActivityKind = 'peer-joined' | 'peer-left' | 'member' | 'file-added' | 'file-changed' | 'file-deleted' | 'conflict' | 'warning'
export interface ActivityEvent { seq: number; time: number; kind: ActivityKind; message: string }

interface PeerLike { id: string; address: string }

const CAPACITY = 200
const DIFF_EVERY_MS = 2000
const MAX_FILE_EVENTS_PER_DIFF = 20 // a big sync is summarised, not flooded
const CONFLICT_COPY = /\.sync-conflict-\d{8}-\d{6}-/

export class ActivityLog {
  private readonly events: ActivityEvent[] = []
  private seq = 0
  /** Each visible file's entry at the last diff: the index's own object, so a file costs
   *  a map slot here, not a signature string (60,000 files: heap 73.4 -> 63.7 MB). */
  private seen = new Map<string, Entry>()
  /** Paths changed since the last diff. */
  private changed = new Set<string>()
  private peers = new Map<string, string>()
  private diffTimer: NodeJS.Timeout | null = null
  private peerTimer: NodeJS.Timeout | null = null
  private lastDiffMs = 0
  private stopped = false

  add(kind: ActivityKind, message: string): void {
    this.events.push({ seq: ++this.seq, time: Date.now(), kind, message })
    if (this.events.length > CAPACITY) this.events.shift()
  }

  /** Events after `since` (a seq), oldest first. */
  list(since = 0): ActivityEvent[] {
    return this.events.filter((e) => e.seq > since)
  }

  /** Follows a folder's changes and a peer list (polled: the network layer has no events). */
  watch(folder: Folder, peerList: () => PeerLike[]): void {
    for (const [p, node] of folder.index.nodes()) {
      const file = fileOf(node)
      if (file !== null) this.seen.set(p, file)
    }
    // Only the paths that changed: an idle folder costs nothing, and a busy one the paths
    // it changes (a diff of the whole index every 2 s walked all 100,000 paths of a big
    // one while they arrived).
    folder.onChange((paths) => {
      for (const p of paths) this.changed.add(p)
      this.scheduleDiff(folder)
    })
    folder.on('member', () => this.add('member', 'a new member device joined the folder'))
    folder.on('warning', (err: Error) => this.add('warning', err.message))
    this.peerTimer = setInterval(() => this.diffPeers(peerList()), 1000)
    this.peerTimer.unref()
  }

  stop(): void {
    this.stopped = true
    if (this.diffTimer) clearTimeout(this.diffTimer)
    if (this.peerTimer) clearInterval(this.peerTimer)
  }

  /** At most every 2 s while changes come, and less often when a diff is slow (very many
   *  changes), so that it stays under ~5% of the event loop that also serves FUSE. */
  private scheduleDiff(folder: Folder): void {
    if (this.diffTimer || this.stopped) return
    this.diffTimer = setTimeout(() => {
      const started = Date.now()
      this.diffFiles(folder)
      this.lastDiffMs = Date.now() - started
      this.diffTimer = null
    }, Math.max(DIFF_EVERY_MS, this.lastDiffMs * 20))
  }

  private diffFiles(folder: Folder): void {
    const changes: Array<[ActivityKind, string]> = []
    for (const p of this.changed) {
      const node = folder.index.get(p)
      const file = node ? fileOf(node) : null
      const old = this.seen.get(p)
      if (file === null) {
        if (old === undefined) continue
        this.seen.delete(p)
        changes.push(['file-deleted', p])
        continue
      }
      this.seen.set(p, file)
      if (old === undefined) changes.push([CONFLICT_COPY.test(p) ? 'conflict' : 'file-added', p])
      else if (!sameFile(old, file)) changes.push(['file-changed', p])
    }
    this.changed.clear()
    const verbs: Record<string, string> = { 'file-added': 'added', 'file-changed': 'changed', 'file-deleted': 'deleted', conflict: 'conflict copy created:' }
    for (const [kind, p] of changes.slice(0, MAX_FILE_EVENTS_PER_DIFF)) this.add(kind, `${verbs[kind]} ${p}`)
    if (changes.length > MAX_FILE_EVENTS_PER_DIFF) this.add('file-changed', `and ${changes.length - MAX_FILE_EVENTS_PER_DIFF} more changes`)
  }

  private diffPeers(list: PeerLike[]): void {
    const next = new Map(list.map((p) => [p.id, p.address]))
    for (const [id, address] of next) if (!this.peers.has(id)) this.add('peer-joined', `peer ${id} connected from ${address}`)
    for (const [id, address] of this.peers) if (!next.has(id)) this.add('peer-left', `peer ${id} (${address}) disconnected`)
    this.peers = next
  }
}

/** A visible file's entry; null for directories. */
function fileOf(node: VisibleNode): Entry | null {
  return node.entry.type === 'dir' ? null : node.entry
}

/** Whether two entries of a path show the same file: the same content, and the same mtime. */
function sameFile(a: Entry, b: Entry): boolean {
  return a === b || (a.mtime === b.mtime && contentIdentity(a) === contentIdentity(b))
}
