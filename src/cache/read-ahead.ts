// Adaptive read-ahead: while a handle reads sequentially, prefetch a window of blocks
// beyond the read that doubles each time the pattern holds; a seek resets it to the
// smallest window. Bounded, so a random read of 1 MiB in a huge file fetches about 3 MiB
// (blocks are 1 MiB: up to 8 MiB ahead).
export const MIN_WINDOW = 2
export const MAX_WINDOW = 8

export class ReadAhead {
  private nextOffset = -1
  private window = 0
  private prefetchedTo = 0 // first block index not yet asked for
  seeked = false // the last read observed did not follow the one before

  /** Returns the [start, end) block range to prefetch now, or null. */
  observe(offset: number, length: number, blockSize: number, totalBlocks: number): [number, number] | null {
    const sequential = offset === this.nextOffset
    this.seeked = !sequential
    this.nextOffset = offset + length
    if (sequential) {
      this.window = this.window === 0 ? MIN_WINDOW : Math.min(this.window * 2, MAX_WINDOW)
    } else {
      this.window = 0
      this.prefetchedTo = 0
    }
    // A seek often starts a sequential read (dd skip=, a player): the blocks after it are
    // asked for with the first read, not after the second, which saves a round trip.
    const ahead = sequential ? this.window : MIN_WINDOW
    const lastRead = Math.floor((offset + length - 1) / blockSize)
    const start = Math.max(lastRead + 1, this.prefetchedTo)
    const end = Math.min(lastRead + 1 + ahead, totalBlocks)
    if (start >= end) return null
    this.prefetchedTo = end
    return [start, end]
  }
}
