// The daemon's heap policy, set once a process becomes a long-running daemon.
import v8 from 'v8'

const MALLOC_TRIM_INTERVAL_MS = 20000
const OLD_SPACE_GROWTH_PERCENT = 25

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
 *  `trimMalloc` (glibc's malloc_trim, from the patched addon) runs every 20 s when given. */
export function useFrugalHeap(trimMalloc?: () => void): void {
  v8.setFlagsFromString(`--heap-growing-percent=${OLD_SPACE_GROWTH_PERCENT}`)
  if (!trimMalloc) return
  // glibc keeps what was freed for reuse: after a 1 GiB transfer about 30 MiB that nothing
  // needed again. Given back now and then, it stays out of the peak that follows (a 1 GiB
  // read then 20,000 files: 211 -> 176 MiB). Not more often: every 5 s made the files 12 %
  // slower, as memory given back was faulted in again at once.
  setInterval(trimMalloc, MALLOC_TRIM_INTERVAL_MS).unref()
}
