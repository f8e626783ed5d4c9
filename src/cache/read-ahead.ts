// Adaptive read-ahead: while a handle reads sequentially, prefetch a window of blocks
// beyond the read that doubles with each block the pattern holds; a seek resets it.
// After a seek, nothing is prefetched until the reader has gone past the middle of a block
// in order: a random read of up to half a block costs no transfer but its own, and a 1 MiB
// read at a random offset fetches about 3 MiB (blocks are 1 MiB: up to 8 MiB ahead).
export const MIN_WINDOW = 2
export const MAX_WINDOW = 8

export class ReadAhead {
  private nextOffset = -1
  private window = 0 // 0: not yet shown to be sequential since the last seek
  private block = -1 // the block the reader is in
  private sinceSeek = 0 // bytes read near each other since the last seek
  private prefetchedTo = 0 // first block index not yet asked for
  seeked = false // the last read observed was not within a block of where the one before ended

  /** Returns the [start, end) block range to prefetch now, or null. */
  observe(offset: number, length: number, blockSize: number, totalBlocks: number): [number, number] | null {
    // In order within a block's reach: the kernel's requests for one read reach the event
    // loop through several FUSE threads, not always in the order they were sent.
    const sequential = this.nextOffset >= 0 && Math.abs(offset - this.nextOffset) <= blockSize
    const lastRead = Math.floor((offset + length - 1) / blockSize)
    this.seeked = !sequential
    this.nextOffset = sequential ? Math.max(this.nextOffset, offset + length) : offset + length
    if (!sequential) {
      this.window = 0
      this.sinceSeek = 0
      this.prefetchedTo = 0
      this.block = lastRead
    }
    this.sinceSeek += length
    if (lastRead > this.block) {
      this.block = lastRead
      this.window = Math.min(this.window * 2, MAX_WINDOW) || MIN_WINDOW
    } else if (this.window === 0 && this.sinceSeek * 2 > blockSize) {
      // Past the middle: a seek often starts a sequential read (dd skip=, a player), whose
      // next blocks are asked for now rather than when it needs them.
      this.window = MIN_WINDOW
    }
    if (this.window === 0) return null
    const start = Math.max(lastRead + 1, this.prefetchedTo)
    const end = Math.min(lastRead + 1 + this.window, totalBlocks)
    if (start >= end) return null
    this.prefetchedTo = end
    return [start, end]
  }
}
