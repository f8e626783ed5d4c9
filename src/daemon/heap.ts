// The daemon's heap policy, set once a process becomes a long-running daemon.
import v8 from 'v8'

/** V8 lets the heap of a busy process grow to several times what is live: with 100,000
 *  files written, 480 MiB resident for 120 MiB live. Asking it to optimise for size once
 *  running keeps it near the live size (250 MiB there); set at run time it leaves the
 *  young generation as it was, so reads and writes measured no slower. */
export function useFrugalHeap(): void {
  v8.setFlagsFromString('--optimize-for-size')
}
