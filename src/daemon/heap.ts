// The daemon's heap policy, set once a process becomes a long-running daemon.
import v8 from 'v8'

const MALLOC_TRIM_INTERVAL_MS = 20000
const OLD_SPACE_GROWTH_PERCENT = 25
const TRIM_AFTER_HEAP_GROWTH = 16 * 1024 * 1024

/** Node flags for a daemon process, given when the CLI starts one. Semi-spaces of 4 MiB
 *  instead of 16 keep a few MiB out of the writing daemon's peak at the same speed
 *  (100,000 files: 258 MiB in one run, 267 with 8 MiB, 270 in three runs with 16). */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=4']

/** V8 lets the heap of a busy process grow to several times what is live: with 100,000
 *  files written, 480 MiB resident for 120 MiB live. Once running, the old generation may
 *  grow to 1.25 times what the last major GC kept. `--optimize-for-size` (used until the
 *  twelfth session) kept it as close, but made every major GC one that reduces memory,
 *  compacting the whole old generation: with 90 MB live, 100,000 files took 35 s with it
 *  and 30-33 s without, and writes were 15 % slower (docs/benchmarks.md).
 *  `trimMalloc` (glibc's malloc_trim, from the patched addon) runs as TrimPolicy says. */
export function useFrugalHeap(trimMalloc?: () => void): void {
  v8.setFlagsFromString(`--heap-growing-percent=${OLD_SPACE_GROWTH_PERCENT}`)
  if (!trimMalloc) return
  const heapSize = () => v8.getHeapStatistics().total_heap_size
  const policy = new TrimPolicy(heapSize())
  setInterval(() => {
    if (policy.shouldTrim(heapSize())) trimMalloc()
  }, MALLOC_TRIM_INTERVAL_MS).unref()
}

/** When freed memory goes back to the system: when the JS heap has grown by
 *  TRIM_AFTER_HEAP_GROWTH since the last trim (or since its low point after it).
 *  glibc keeps what was freed for reuse: after a 1 GiB transfer about 30 MiB, which V8's
 *  heap cannot use. A growing heap (many files) would add its own peak on top, so that is
 *  when it goes back (the bench's peak: 263 MiB, 265 with a trim every 20 s, 316 with
 *  none). An idle daemon keeps it: the next read reuses it, where after a trim it faulted
 *  in 4-16 MiB of fresh pages at about 5 us each on this VM (a 1 MiB read at a fresh offset
 *  after 25 s idle: 32-100 ms with a trim every 20 s, 15-53 ms with this rule). */
export class TrimPolicy {
  private mark: number

  constructor(heapSize: number, private readonly growth = TRIM_AFTER_HEAP_GROWTH) {
    this.mark = heapSize
  }

  shouldTrim(heapSize: number): boolean {
    this.mark = Math.min(this.mark, heapSize)
    if (heapSize - this.mark < this.growth) return false
    this.mark = heapSize
    return true
  }
}
