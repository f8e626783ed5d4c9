// Reading and writing file bytes in blob cores. Reads fetch exactly the blocks that
// cover a range (hypercore verifies each against its Merkle tree), with a deadline.
import Corestore from 'corestore'
import Hypercore from 'hypercore'
import { createHash } from 'crypto'
import { ContentRef } from './entry'
import { FsError } from './errors'

export const BLOCK_SIZE = 256 * 1024
const APPEND_BATCH = 16

export class ContentStore {
  private readonly cores = new Map<string, Hypercore>()

  constructor(
    private readonly store: Corestore,
    private readonly contentKey: Buffer | null,
    private readonly readTimeoutMs: number
  ) {}

  /** Registers a blob core already opened (a member drive's), so reads share it. */
  register(core: Hypercore): void {
    this.cores.set(core.key.toString('hex'), core)
  }

  core(ref: ContentRef): Hypercore {
    let core = this.cores.get(ref.core)
    if (!core) {
      core = this.store.get({ key: Buffer.from(ref.core, 'hex'), encryption: this.contentKey ? { key: this.contentKey } : null })
      this.cores.set(ref.core, core)
    }
    return core
  }

  async read(ref: ContentRef, offset: number, length: number): Promise<Buffer> {
    const end = Math.min(offset + length, ref.byteLength)
    if (offset >= end) return Buffer.alloc(0)
    const first = Math.floor(offset / ref.blockSize)
    const last = Math.floor((end - 1) / ref.blockSize)
    const core = this.core(ref)
    const blocks: Promise<Buffer>[] = []
    for (let i = first; i <= last; i++) blocks.push(this.block(core, ref.blockOffset + i))
    const joined = Buffer.concat(await Promise.all(blocks))
    const skip = offset - first * ref.blockSize
    return joined.subarray(skip, skip + end - offset)
  }

  /** Starts fetching blocks [start, end) of a file without waiting for them. */
  prefetch(ref: ContentRef, start: number, end: number): void {
    const core = this.core(ref)
    const range = core.download({ start: ref.blockOffset + start, end: ref.blockOffset + end })
    range.done().catch(() => {})
  }

  private async block(core: Hypercore, index: number): Promise<Buffer> {
    let block: Buffer | null
    try {
      block = await core.get(index, { timeout: this.readTimeoutMs })
    } catch (err) {
      throw new FsError('EIO', `block ${index} not available: ${(err as Error).message}`)
    }
    if (!block) throw new FsError('EIO', `block ${index} not available`)
    return block
  }

  /** Appends a file's bytes, given as chunks of exactly BLOCK_SIZE (the last may be
   *  shorter), to a writable blob core; returns where they landed and their hash. */
  async append(core: Hypercore, chunks: AsyncIterable<Buffer>): Promise<{ ref: ContentRef; hash: string }> {
    await core.ready()
    const blockOffset = core.length
    const byteOffset = core.byteLength
    const hash = createHash('sha256')
    let byteLength = 0 // not core.byteLength: encryption pads each block
    let batch: Buffer[] = []
    for await (const chunk of chunks) {
      hash.update(chunk)
      byteLength += chunk.length
      batch.push(chunk)
      if (batch.length >= APPEND_BATCH) {
        await core.append(batch)
        batch = []
      }
    }
    if (batch.length) await core.append(batch)
    const ref: ContentRef = {
      core: core.key.toString('hex'),
      blockOffset,
      blockLength: core.length - blockOffset,
      byteOffset,
      byteLength,
      blockSize: BLOCK_SIZE
    }
    return { ref, hash: hash.digest('hex') }
  }
}
