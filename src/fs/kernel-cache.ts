// The kernel keeps the names and stats it looked up for long, because every change made
// other than through the mount (a peer's, or a conflict copy made from one) is told to it
// by the patched addon (scripts/patch-fuse-native.js, "kernel view"). A warm `ls -lR` or
// `find` then asks the daemon nothing but the listings. Changes made through the mount the
// kernel knows already.

export interface KernelCacheBinding {
  /** Each change as "+path" (exists) or "-path" (went), ended by a NUL. */
  tsyncfs_kernel_changed?: (changes: string) => void
}

/** How long the kernel keeps a name and a stat: a bound for a change that would not reach
 *  it (there should be none), as libfuse's default of a second is for the unpatched addon. */
const KEEP_SECONDS = 60

export class KernelCache {
  /** This turn's changes, in the form the addon takes. */
  private pending = ''

  constructor(private readonly binding: KernelCacheBinding) {}

  /** The mount options that let the kernel keep what it looked up, where changes reach it.
   *  ac_attr_timeout stays libfuse's second: auto_cache re-checks a file's size and mtime
   *  at an open, and drops its pages if a new version came. */
  mountOptions(): string[] {
    if (!this.binding.tsyncfs_kernel_changed) return []
    return [`entry_timeout=${KEEP_SECONDS}`, `attr_timeout=${KEEP_SECONDS}`, 'ac_attr_timeout=1']
  }

  /** `path` changed other than through the mount, and exists now or not. Told with the
   *  other changes of this turn of the event loop: one call, and one wake-up of the
   *  addon's notifier, for a group commit of many files. */
  changed(path: string, exists: boolean): void {
    if (!this.binding.tsyncfs_kernel_changed) return
    if (this.pending === '') queueMicrotask(() => this.flush())
    this.pending += (exists ? '+' : '-') + path + '\0'
  }

  private flush(): void {
    const changes = this.pending
    this.pending = ''
    this.binding.tsyncfs_kernel_changed?.(changes)
  }
}
