// Reading and writing file bytes in blob cores. Reads fetch exactly the blocks that
// cover a range (hypercore verifies each against its Merkle tree), with a deadline.
import Corestore from 'corestore'
import Hypercore from 'hypercore'
import { createHash } from 'crypto'
import { ContentRef } from './entry'
import { FsError } from './errors'
import { BlockCache } from '../cache/block-cache'
import { ReadCopies } from '../cache/read-copies'
import { MAX_WINDOW } from '../cache/read-ahead'

/** 1 MiB: hypercore's cost is largely per block (docs/design.md, "Fixed-size blocks"). */
export const BLOCK_SIZE = 1024 * 1024
// One append takes up to 4 MiB, or up to 256 blocks of small files (one group commit's).
const APPEND_BATCH_BYTES = 4 * 1024 * 1024
const APPEND_BATCH_BLOCKS = 256
// Room for a whole read-ahead window of local blocks, plus the blocks being read.
const RECENT_BLOCKS = MAX_WINDOW + 8
/** Work that no reader waits for (a block's read copy, the read-ahead after a seek) starts
 *  this long after the read that set it off: the reader's next requests (the rest of its
 *  read, which the kernel sends once the first replies are in) come first. Started in the
 *  same turn of the event loop, it held those back about 6 ms (traced: 1 MiB at a fresh
 *  offset of a cold file, 4 of its 8 requests answered 6 ms after the others). */
export const BACKGROUND_DELAY_MS = 3

export class ContentStore {
  private readonly cores = new Map<string, Hypercore>()
  private readonly own = new Set<string>()
  /** The last blocks read, decoded: FUSE reads 128 KiB at a time, so each 1 MiB block is
   *  asked for eight times in a row; concurrent reads of one block share one fetch. */
  private readonly recent = new Map<string, Promise<Buffer>>()
  /** Set once the folder has its cache; blocks of other members' content are cache. */
  cache: BlockCache | null = null
  onCopyError: ((err: Error) => void) | null = null
  private lastCopyError = 0
  /** Whole files being fetched (pins, --keep-all): no read waits for them, so a stall
   *  would go unnoticed; one that gets no block for the read timeout is reported here. */
  onStall: ((err: Error) => void) | null = null
  private readonly wholeFiles = new Map<string, { ref: ContentRef; since: number; reported: boolean }>()
  private readonly lastBlockAt = new Map<string, number>()
  private stallTimer: NodeJS.Timeout | null = null
  /** Copies of blocks that were read (cached, or this device's own), for re-reads at disk speed. */
  copies: ReadCopies | null = null

  constructor(
    private readonly store: Corestore,
    private readonly contentKey: Buffer | null,
    private readonly readTimeoutMs: number
  ) {}

  /** Registers this device's own blob core: its blocks are never cache. */
  registerOwn(core: Hypercore): void {
    const hex = core.key.toString('hex')
    this.cores.set(hex, core)
    this.own.add(hex)
  }

  isOwn(ref: ContentRef | string): boolean {
    return this.own.has(typeof ref === 'string' ? ref : ref.core)
  }

  core(ref: ContentRef): Hypercore {
    return this.coreByKey(ref.core)
  }

  private coreByKey(hex: string): Hypercore {
    let core = this.cores.get(hex)
    if (!core) {
      core = this.store.get({ key: Buffer.from(hex, 'hex'), encryption: this.contentKey ? { key: this.contentKey } : null })
      core.on('download', (index: number, bytes: number) => {
        this.lastBlockAt.set(hex, Date.now())
        this.cache?.added(hex, index, bytes)
      })
      this.cores.set(hex, core)
    }
    return core
  }

  /** Drops a cached block from disk (the space returns after compaction). */
  async clear(hex: string, index: number): Promise<void> {
    if (this.own.has(hex)) return
    const core = this.coreByKey(hex)
    this.recent.delete(`${hex}:${index}`)
    await this.copies?.drop(hex, index)
    await core.ready()
    await core.clear(index, index + 1)
  }

  async dropCopy(hex: string, index: number): Promise<void> {
    await this.copies?.drop(hex, index)
  }

  /** Compacts only the cores that lost blocks: compacting the whole store would also
   *  rewrite this device's own content and the metadata, holding two copies meanwhile. */
  async compact(cores: string[]): Promise<void> {
    for (const hex of cores) {
      // An explicit compaction collects blob garbage (rocksdb-native asks for RocksDB's
      // default age cut-off), though background ones do not (daemon/store.ts).
      const storage = this.cores.get(hex)?.core?.state?.storage
      if (storage) await storage.compact()
    }
  }

  /** Starts fetching a whole file in the background (pinned, or a full mirror). */
  fetchAll(ref: ContentRef): void {
    const id = `${ref.core}:${ref.blockOffset}`
    this.wholeFiles.set(id, { ref, since: Date.now(), reported: false })
    this.download(this.core(ref), ref, 0, ref.blockLength).finally(() => this.wholeFiles.delete(id))
    if (!this.stallTimer) {
      this.stallTimer = setInterval(() => this.reportStalls(), Math.max(500, this.readTimeoutMs / 2))
      this.stallTimer.unref()
    }
  }

  /** Reports each whole-file download that got no block of its core for the read timeout,
   *  with what hypercore knows of the core's peers; again only after blocks came meanwhile. */
  private reportStalls(): void {
    const now = Date.now()
    for (const fetch of this.wholeFiles.values()) {
      const quietSince = Math.max(fetch.since, this.lastBlockAt.get(fetch.ref.core) ?? 0)
      if (quietSince > fetch.since && fetch.reported) fetch.reported = false
      if (fetch.reported || now - quietSince < this.readTimeoutMs) continue
      fetch.reported = true
      fetch.since = now
      const { ref } = fetch
      this.onStall?.(new Error(`fetching blocks ${ref.blockOffset}-${ref.blockOffset + ref.blockLength - 1} of core ${ref.core.slice(0, 16)} (a pinned file) stalled: ` +
        `no block came for ${Math.round((now - quietSince) / 1000)} s (${replicationOf(this.core(ref))})`))
    }
    if (this.wholeFiles.size === 0 && this.stallTimer) {
      clearInterval(this.stallTimer)
      this.stallTimer = null
    }
  }

  /** Bytes of a file whose blocks are on this disk. */
  async localBytes(ref: ContentRef): Promise<number> {
    const core = this.core(ref)
    await core.ready()
    if (await core.has(ref.blockOffset, ref.blockOffset + ref.blockLength)) return ref.byteLength
    let local = 0
    for (let i = 0; i < ref.blockLength; i++) {
      if (await core.has(ref.blockOffset + i)) local += Math.min(ref.blockSize, ref.byteLength - i * ref.blockSize)
    }
    return local
  }

  /** Where a file's bytes lie in its core's read-copy file; null if its blocks get no
   *  copies (no cache, or blocks of another size). Every block of a file but its last is
   *  whole, so its bytes lie contiguous there. This device's own content gets copies too:
   *  read from the log it came at a sixth of a copy's speed. */
  copyBase(ref: ContentRef): number | null {
    if (!this.copies || !this.cache || ref.blockSize !== this.copies.slot) return null
    return ref.blockOffset * ref.blockSize
  }

  /** Reads into `target` (up to its length); returns the number of bytes read. */
  async readInto(ref: ContentRef, offset: number, target: Buffer): Promise<number> {
    const end = Math.min(offset + target.length, ref.byteLength)
    if (offset >= end) return 0
    const first = ref.blockOffset + Math.floor(offset / ref.blockSize)
    const last = ref.blockOffset + Math.floor((end - 1) / ref.blockSize)
    const base = this.copyBase(ref)
    if (base !== null && this.copies!.covers(ref.core, first, last)) {
      const n = await this.copies!.read(ref.core, base + offset, target, end - offset).catch(() => null)
      if (n === end - offset) {
        for (let i = first; i <= last; i++) this.cache!.used(ref.core, i, true)
        return n
      }
    }
    return this.copyBlocks(ref, offset, end, target)
  }

  async read(ref: ContentRef, offset: number, length: number): Promise<Buffer> {
    const end = Math.min(offset + length, ref.byteLength)
    if (offset >= end) return Buffer.alloc(0)
    const first = Math.floor(offset / ref.blockSize)
    // Most reads lie within one block: a view of it, not a copy (the caller copies anyway).
    if (first === Math.floor((end - 1) / ref.blockSize)) {
      const skip = offset - first * ref.blockSize
      return (await this.block(this.core(ref), ref, ref.blockOffset + first)).subarray(skip, skip + end - offset)
    }
    const out = Buffer.allocUnsafe(end - offset)
    return out.subarray(0, await this.copyBlocks(ref, offset, end, out))
  }

  /** Copies bytes [offset, end) of a file into `target` from each block in turn: joining
   *  the blocks first cost a buffer of whole blocks (2 MiB) for a read of 128 KiB that
   *  crossed a block's end. */
  private async copyBlocks(ref: ContentRef, offset: number, end: number, target: Buffer): Promise<number> {
    const first = Math.floor(offset / ref.blockSize)
    const last = Math.floor((end - 1) / ref.blockSize)
    const core = this.core(ref)
    const fetching: Promise<Buffer>[] = []
    for (let i = first; i <= last; i++) fetching.push(this.block(core, ref, ref.blockOffset + i))
    const blocks = await Promise.all(fetching)
    let copied = 0
    blocks.forEach((block, i) => {
      const blockStart = (first + i) * ref.blockSize
      copied += block.copy(target, copied, Math.max(offset - blockStart, 0), Math.min(end - blockStart, block.length))
    })
    return copied
  }

  /** Starts fetching blocks [start, end) of a file without waiting for them. */
  prefetch(ref: ContentRef, start: number, end: number): void {
    if (start >= end || this.copies?.covers(ref.core, ref.blockOffset + start, ref.blockOffset + end - 1)) return
    const core = this.core(ref)
    this.download(core, ref, start, end)
    // Blocks already on this disk are read ahead as well, so that a sequential reader does
    // not wait for one storage read per block.
    for (let i = start; i < end; i++) this.readAheadLocal(core, ref, ref.blockOffset + i)
  }

  /** Settles when the blocks are here, or the download ends otherwise (never rejects). */
  private download(core: Hypercore, ref: ContentRef, start: number, end: number): Promise<void> {
    return core.download({ start: ref.blockOffset + start, end: ref.blockOffset + end }).done().catch(() => {})
  }

  private readAheadLocal(core: Hypercore, ref: ContentRef, index: number): void {
    if (this.recent.has(`${ref.core}:${index}`) || this.copies?.covers(ref.core, index, index)) return
    core.has(index).then((local) => {
      if (local) this.block(core, ref, index).catch(() => {})
    }, () => {})
  }

  private block(core: Hypercore, ref: ContentRef, index: number): Promise<Buffer> {
    const key = `${ref.core}:${index}`
    let block = this.recent.get(key)
    if (block) {
      this.recent.delete(key) // re-inserted below: the map's order is the LRU order
    } else {
      block = this.fetchBlock(core, ref, index)
      block.catch(() => this.recent.delete(key))
    }
    this.recent.set(key, block)
    if (this.recent.size > RECENT_BLOCKS) this.recent.delete(this.recent.keys().next().value as string)
    return block
  }

  private async fetchBlock(core: Hypercore, ref: ContentRef, index: number): Promise<Buffer> {
    let block: Buffer | null
    // Asked for before awaiting anything, so that it goes out ahead of the read-ahead.
    const wasLocal = this.cache && !this.own.has(ref.core) ? core.has(index).catch(() => false) : null
    const getting = core.get(index, { timeout: this.readTimeoutMs })
    try {
      if (wasLocal) this.cache?.used(ref.core, index, await wasLocal)
      block = await getting
    } catch (err) {
      throw new FsError('EIO', `block ${index} not available: ${(err as Error).message} (${replicationOf(core)})`)
    }
    if (!block) throw new FsError('EIO', `block ${index} not available (${replicationOf(core)})`)
    if (!this.own.has(ref.core)) this.cache?.holds(ref.core, index, block.length)
    // The copy's encryption and write wait until the readers waiting for the block had it.
    setTimeout(() => this.keepCopy(ref, index, block), BACKGROUND_DELAY_MS)
    return block
  }

  /** Keeps a read copy of a block that was read. */
  private keepCopy(ref: ContentRef, index: number, block: Buffer): void {
    const { copies, cache } = this
    if (!copies || !cache || ref.blockSize !== copies.slot || copies.covers(ref.core, index, index) || !cache.takesCopy(ref.core, index)) return
    copies.write(ref.core, index, block).then(async (kept) => {
      if (kept && !cache.copied(ref.core, index, block.length)) await copies.drop(ref.core, index)
    }).catch((err) => {
      // A full disk would fail every copy: say so once a minute, reads go on from the log.
      if (Date.now() - this.lastCopyError < 60000) return
      this.lastCopyError = Date.now()
      this.onCopyError?.(new Error(`read copy not kept: ${(err as Error).message}`))
    })
  }

  /** Appends files' bytes, each given as chunks of exactly BLOCK_SIZE (the last may be
   *  shorter), to a writable blob core; returns where each landed and its hash. Blocks of
   *  several files share appends: one storage write for many small files. One append is
   *  under way while the next batch is read and hashed: hypercore's append (encryption,
   *  tree, the storage's write) and the staging file's reads overlap. */
  async appendFiles(core: Hypercore, files: Array<AsyncIterable<Buffer> | null>): Promise<Array<{ ref: ContentRef; hash: string } | null>> {
    await core.ready()
    const appends = new PipelinedAppends(core)
    const out: Array<{ ref: ContentRef; hash: string } | null> = []
    for (const chunks of files) {
      if (!chunks) {
        out.push(null)
        continue
      }
      const blockOffset = appends.length
      const byteOffset = appends.byteLength
      const hash = createHash('sha256')
      for await (const chunk of chunks) {
        hash.update(chunk)
        await appends.push(chunk)
      }
      const ref: ContentRef = {
        core: core.key.toString('hex'),
        blockOffset,
        blockLength: appends.length - blockOffset,
        byteOffset,
        byteLength: appends.byteLength - byteOffset,
        blockSize: BLOCK_SIZE
      }
      out.push({ ref, hash: hash.digest('hex') })
    }
    await appends.end()
    return out
  }
}

/** Blocks appended in batches, with at most one batch's append in flight. `length` and
 *  `byteLength` count every block pushed, as if all were appended already. */
class PipelinedAppends {
  length: number
  byteLength: number
  private batch: Buffer[] = []
  private batchBytes = 0
  private inFlight: Promise<unknown> = Promise.resolve()

  constructor(private readonly core: Hypercore) {
    this.length = core.length
    this.byteLength = core.byteLength
  }

  /** Waits only when a full batch must wait for the previous append. */
  async push(block: Buffer): Promise<void> {
    this.batch.push(block)
    this.batchBytes += block.length
    this.length++
    this.byteLength += block.length
    if (this.batchBytes >= APPEND_BATCH_BYTES || this.batch.length >= APPEND_BATCH_BLOCKS) await this.handOver()
  }

  /** Resolves when every block pushed is appended; rejects if any append failed. */
  async end(): Promise<void> {
    await this.handOver()
    await this.inFlight
  }

  private async handOver(): Promise<void> {
    if (this.batch.length === 0) return
    const blocks = this.batch
    this.batch = []
    this.batchBytes = 0
    await this.inFlight
    this.inFlight = this.core.append(blocks)
    this.inFlight.catch(() => {}) // observed by the next handOver or end, not unhandled meanwhile
  }
}

/** Why a block may not have come, for the log: what hypercore knows of each peer of its
 *  core. A peer that answered "not available" too often is paused by hypercore for good. */
function replicationOf(core: Hypercore): string {
  if (core.peers.length === 0) return 'no peer replicates this core'
  return core.peers.map((p) => {
    const s = p.stats
    return `peer ${p.remotePublicKey.toString('hex').slice(0, 16)}: has ${p.remoteContiguousLength} of ${p.remoteLength} blocks${p.paused ? ', paused' : ''}, ` +
      `${p.inflight} requests in flight, ${s.wireRequest.tx} sent, ${s.wireData.rx} answered with data, ` +
      `${s.notAvailableBackoffs} "not available", ${s.backoffs} "invalid request"`
  }).join('; ')
}
