// The local block cache's policy: which blocks of other members' content are on this disk,
// when each was last used, which are pinned, and evicting the least recently used ones
// when the cache is over its limit. The bookkeeping is local (a file beside the cores) and
// never replicated; the blocks themselves live in the cores.
import { promises as fs } from 'fs'
import { saveJson } from '../json-file'

export interface CacheBackend {
  /** Drops a block and its read copy, if any. */
  clear(core: string, index: number): Promise<void>
  /** Drops only the read copy of a block. */
  dropCopy(core: string, index: number): Promise<void>
  /** Returns the space of cleared blocks to the disk, for these cores only. */
  compact(cores: string[]): Promise<void>
  /** This device's own content: never cache, but its read copies are. */
  isOwn(core: string): boolean
}

export interface CacheStats {
  limit: number
  localBytes: number
  /** Copies of read blocks for fast re-reads; the limit counts them too. */
  copyBytes: number
  pinnedBytes: number
  evictableBytes: number
  hits: number
  /** Of the hits, blocks read on FUSE's threads from their copies (counted once per block
   *  and second, not per read). */
  directHits: number
  misses: number
  hitRate: number
}

/** `copy`: bytes of the block's read copy; copies do not outlive the process, so they are
 *  not saved. A block of this device's own content has a record only while it has a copy,
 *  with 0 bytes: the block itself is not cache. */
interface BlockRecord { bytes: number; lastUse: number; copy: number }

const SAVE_EVERY_MS = 2000
/** Evict down to this share of the limit, so eviction runs in batches, not per block. */
const LOW_WATER = 0.9

export class BlockCache {
  private readonly blocks = new Map<string, BlockRecord>()
  private pinned = new Set<string>()
  private total = 0 // log blocks and read copies
  private copies = 0
  private hits = 0
  private directHits = 0
  private misses = 0
  private dirty = false
  private saveTimer: NodeJS.Timeout | null = null
  private evicting: Promise<void> | null = null
  private evictAgain = false // blocks arrived while evicting: check the limit again after
  // Compaction is slow under load; it runs apart from eviction so that blocks arriving
  // meanwhile are still evicted and the cache stays near its limit.
  private compacting: Promise<void> | null = null
  private readonly toCompact = new Set<string>()

  constructor(
    private readonly file: string,
    public limit: number,
    private readonly backend: CacheBackend,
    private readonly onError: (err: Error) => void
  ) {}

  static key(core: string, index: number): string {
    return `${core}:${index}`
  }

  async load(): Promise<void> {
    try {
      const saved = JSON.parse(await fs.readFile(this.file, 'utf8')) as { blocks: Array<[string, number, number]>; hits: number; directHits?: number; misses: number }
      for (const [key, bytes, lastUse] of saved.blocks) this.blocks.set(key, { bytes, lastUse, copy: 0 })
      this.total = [...this.blocks.values()].reduce((n, b) => n + b.bytes, 0)
      this.hits = saved.hits ?? 0
      this.directHits = saved.directHits ?? 0
      this.misses = saved.misses ?? 0
    } catch {}
  }

  async save(): Promise<void> {
    if (this.saveTimer) clearTimeout(this.saveTimer)
    this.saveTimer = null
    if (!this.dirty) return
    this.dirty = false
    const blocks = [...this.blocks].filter(([, b]) => b.bytes > 0).map(([key, b]) => [key, b.bytes, b.lastUse])
    await saveJson(this.file, { blocks, hits: this.hits, directHits: this.directHits, misses: this.misses })
  }

  /** A block of another member's content arrived from a peer. */
  added(core: string, index: number, bytes: number): void {
    const key = BlockCache.key(core, index)
    const old = this.blocks.get(key)
    if (old) this.total -= old.bytes
    this.blocks.set(key, { bytes, lastUse: Date.now(), copy: old?.copy ?? 0 })
    this.total += bytes
    this.changed()
    if (this.total > this.limit) this.evictSoon()
  }

  /** A block read from the log is on this disk: counted now if its download event (which
   *  hypercore may emit after the read returns) has not come yet. */
  holds(core: string, index: number, bytes: number): void {
    if (!this.blocks.has(BlockCache.key(core, index))) this.added(core, index, bytes)
  }

  /** Whether a read copy of this block would be kept: it is in the cache and not pinned
   *  (pinned blocks are not evicted, so their copies could not be either), or it is this
   *  device's own and the cache has room to spare. Copies of own content are rebuilt from
   *  a local read, blocks of others' content from the network: the former only take room
   *  the latter leave, and go first. */
  takesCopy(core: string, index: number): boolean {
    const key = BlockCache.key(core, index)
    if (this.backend.isOwn(core)) return this.total < this.limit * LOW_WATER
    return this.blocks.has(key) && !this.pinned.has(key)
  }

  /** A read copy of a block was written; false if the block is not (or no longer) in the
   *  cache, and the copy should go. */
  copied(core: string, index: number, bytes: number): boolean {
    if (!this.takesCopy(core, index)) return false
    const key = BlockCache.key(core, index)
    if (!this.blocks.has(key)) this.blocks.set(key, { bytes: 0, lastUse: Date.now(), copy: 0 }) // own content
    const record = this.blocks.get(key)!
    this.total += bytes - record.copy
    this.copies += bytes - record.copy
    record.copy = bytes
    if (this.total > this.limit) this.evictSoon()
    return true
  }

  /** A read was served (hit) or had to wait for the network (miss); reads of this
   *  device's own content are neither, but keep its copies' place in the LRU order. */
  used(core: string, index: number, hit: boolean): void {
    const record = this.blocks.get(BlockCache.key(core, index))
    if (record) record.lastUse = Date.now()
    if (this.backend.isOwn(core)) return // nothing to save: own copies' records are not saved
    if (hit) this.hits++
    else this.misses++
    this.changed()
  }

  /** A block was read from its copy outside the event loop (src/fs/direct-reads.ts). */
  usedDirect(core: string, index: number): void {
    if (!this.backend.isOwn(core)) this.directHits++
    this.used(core, index, true)
  }

  /** Replaces the set of pinned blocks (keys from BlockCache.key). */
  setPinned(keys: Set<string>): void {
    this.pinned = keys
  }

  pinnedBytes(): number {
    let n = 0
    for (const key of this.pinned) n += this.blocks.get(key)?.bytes ?? 0
    return n
  }

  stats(): CacheStats {
    const pinnedBytes = this.pinnedBytes()
    const lookups = this.hits + this.misses
    return {
      limit: this.limit,
      localBytes: this.total - this.copies,
      copyBytes: this.copies,
      pinnedBytes,
      evictableBytes: this.total - this.copies - pinnedBytes,
      hits: this.hits,
      directHits: this.directHits,
      misses: this.misses,
      hitRate: lookups ? this.hits / lookups : 0
    }
  }

  evictSoon(): void {
    if (this.evicting) {
      this.evictAgain = true
      return
    }
    this.evicting = this.evict().catch(this.onError).finally(() => {
      this.evicting = null
      // Blocks that arrived during the eviction were not evicted.
      const again = this.evictAgain && this.total > this.limit
      this.evictAgain = false
      if (again) this.evictSoon()
    })
  }

  /** Drops the copies of own content, then clears least recently used, unpinned blocks,
   *  until the cache is under its low water; of a pinned block (pinned after it was read)
   *  only its read copy goes. */
  async evict(): Promise<void> {
    if (this.total <= this.limit) return
    const target = this.limit * LOW_WATER
    const ownFirst = (r: BlockRecord): number => (r.bytes === 0 ? 0 : 1)
    const candidates = [...this.blocks].filter(([key, r]) => r.copy > 0 || !this.pinned.has(key))
      .sort((a, b) => ownFirst(a[1]) - ownFirst(b[1]) || a[1].lastUse - b[1].lastUse)
    const cleared = new Set<string>()
    for (const [key, record] of candidates) {
      if (this.total <= target) break
      const split = key.lastIndexOf(':')
      const core = key.slice(0, split)
      const index = Number(key.slice(split + 1))
      this.total -= record.copy
      this.copies -= record.copy
      record.copy = 0
      if (this.pinned.has(key) || record.bytes === 0) {
        await this.backend.dropCopy(core, index)
        if (record.bytes === 0) this.blocks.delete(key) // own content: only its copy was cache
        continue
      }
      await this.backend.clear(core, index)
      cleared.add(core)
      this.blocks.delete(key)
      this.total -= record.bytes
    }
    this.changed()
    this.compactSoon(cleared)
  }

  private compactSoon(cores: Iterable<string>): void {
    for (const core of cores) this.toCompact.add(core)
    if (this.compacting || this.toCompact.size === 0) return
    const batch = [...this.toCompact]
    this.toCompact.clear()
    this.compacting = this.backend.compact(batch).catch(this.onError).finally(() => {
      this.compacting = null
      this.compactSoon([]) // cores that lost blocks meanwhile
    })
  }

  async close(): Promise<void> {
    await this.evicting
    while (this.compacting) await this.compacting
    this.dirty = true
    await this.save()
  }

  private changed(): void {
    this.dirty = true
    if (!this.saveTimer) this.saveTimer = setTimeout(() => { this.save().catch(this.onError) }, SAVE_EVERY_MS)
  }
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/** "20G", "512M", "1.5g", "1048576", with an optional trailing "iB"/"B". Null if it does not parse. */
export function parseSize(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text)
  if (!m) return null
  const n = Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()])
  return n > 0 ? n : null
}
