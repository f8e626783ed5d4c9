/**
 * When the next group commit starts. Each commit costs both devices a fixed price (an
 * append and a signature per core, storage batches, the peer's verification), so while
 * files keep coming (the last commit grouped several) a commit waits until `paceMs` after
 * the last one started, and groups what arrived meanwhile: 20,000 small files took
 * 1,145-1,352 commits unpaced, 137-153 paced at 50 ms (docs/benchmarks.md). A lone change,
 * or one that someone waits for, starts at once.
 */
export class CommitPacer {
  private scheduled = false
  private timer: NodeJS.Timeout | null = null
  private lastStart = 0
  private lastGroupSize = 0

  /** `start` runs a commit of what is queued, and calls `started` as it takes its group. */
  constructor(private readonly start: () => void, private readonly paceMs: number) {}

  /** Asks for a commit of what is queued; `hurry`: without waiting for the pace. */
  request(hurry: boolean): void {
    if (this.timer && hurry) {
      clearTimeout(this.timer)
      this.timer = null
      this.start()
    }
    if (this.scheduled) return
    this.scheduled = true
    const wait = this.lastGroupSize > 1 ? this.lastStart + this.paceMs - Date.now() : 0
    if (hurry || wait <= 0) return this.start()
    this.timer = setTimeout(() => {
      this.timer = null
      this.start()
    }, wait)
  }

  /** The commit took its group: later requests start another. */
  started(groupSize: number): void {
    this.scheduled = false
    this.lastStart = Date.now()
    this.lastGroupSize = groupSize
  }
}
