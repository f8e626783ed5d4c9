// The daemon's heap policy, set once a process becomes a long-running daemon.
import v8 from 'v8'

const MALLOC_TRIM_INTERVAL_MS = 20000

/** V8 lets the heap of a busy process grow to several times what is live: with 100,000
 *  files written, 480 MiB resident for 120 MiB live. Asking it to optimise for size once
 *  running keeps it near the live size (250 MiB there); set at run time it leaves the
 *  young generation as it was, so reads and writes measured no slower. `trimMalloc`
 *  (glibc's malloc_trim, from the patched addon) runs every 20 s when given. */
export function useFrugalHeap(trimMalloc?: () => void): void {
  v8.setFlagsFromString('--optimize-for-size')
  if (!trimMalloc) return
  // glibc keeps what was freed for reuse: after a 1 GiB transfer about 30 MiB that nothing
  // needed again. Given back now and then, it stays out of the peak that follows (a 1 GiB
  // read then 20,000 files: 211 -> 176 MiB). Not more often: every 5 s made the files 12 %
  // slower, as memory given back was faulted in again at once.
  setInterval(trimMalloc, MALLOC_TRIM_INTERVAL_MS).unref()
}
