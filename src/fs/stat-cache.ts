// The patched addon's stat cache (scripts/patch-fuse-native.js): getattr is answered in C,
// on FUSE's threads, from the stats JavaScript gave, until JavaScript says that the path
// may have changed. Every put and forget runs on the JavaScript thread, so a stat computed
// before a change can never be kept after it.
// The addon also keeps listings: directories whose every child it has been told of, so that
// the lookup of any other name there (as before every create) is answered ENOENT in C. A
// listing stays true because every path whose existence may change is reported here
// (`changed`), with whether it exists now.

/** What FUSE is told about a path (the object fuse-native's getattr takes). */
export interface FuseStat {
  mode: number; uid: number; gid: number; size: number; nlink: number
  mtime: Date; atime: Date; ctime: Date; blksize: number; blocks: number
}

export interface StatCacheBinding {
  tsyncfs_stat_cache_clear?: () => void
  tsyncfs_stat_cache_put?: (path: string, stat: Uint32Array) => void
  tsyncfs_stat_cache_forget?: (path: string, exists: boolean) => void
  tsyncfs_stat_cache_listing?: (dir: string, names: string) => void
}

export class StatCache {
  constructor(
    private readonly binding: StatCacheBinding,
    /** Whether a path exists now, for the listing of its directory. */
    private readonly exists: (path: string) => boolean
  ) {}

  /** Keeps `stat` as `path`'s until the path changes (at most a second); returns it. */
  put<T extends FuseStat>(path: string, stat: T): T {
    this.binding.tsyncfs_stat_cache_put?.(path, statsArray([stat]))
    return stat
  }

  /** `path`'s stat may have changed; null: any path's may have (a rename moves a tree). */
  changed(path: string | null): void {
    const { tsyncfs_stat_cache_forget: forget, tsyncfs_stat_cache_clear: clear } = this.binding
    if (path !== null && forget) forget(path, this.exists(path))
    else clear?.()
  }

  /** readdir's stats in the form the addon takes: packed in one array if it is the patched
   *  one (scripts/patch-fuse-native.js), which costs no typed array per entry. */
  forReaddir(stats: FuseStat[]): Uint32Array | FuseStat[] {
    return this.binding.tsyncfs_stat_cache_put ? statsArray(stats) : stats
  }

  /** `names` are every child `dir` has now (names never hold a slash). */
  listed(dir: string, names: readonly string[]): void {
    this.binding.tsyncfs_stat_cache_listing?.(dir, names.join('/'))
  }
}

/** The stats one after the other in fuse-native's layout (its getStatArray: 18 numbers
 *  each), which the addon's populate_stat reads, and its readdir too when they are packed
 *  so: 64-bit numbers as two 32-bit halves, low first; times in milliseconds. */
function statsArray(stats: readonly FuseStat[]): Uint32Array {
  const ints = new Uint32Array(18 * stats.length)
  const put64 = (i: number, n: number): void => {
    ints[i] = n % 4294967296
    ints[i + 1] = Math.floor(n / 4294967296)
  }
  stats.forEach((stat, k) => {
    const at = 18 * k
    ints[at] = stat.mode
    ints[at + 1] = stat.uid
    ints[at + 2] = stat.gid
    put64(at + 3, stat.size)
    ints[at + 6] = stat.nlink
    ints[at + 9] = stat.blksize
    put64(at + 10, stat.blocks)
    put64(at + 12, stat.atime.getTime())
    put64(at + 14, stat.mtime.getTime())
    put64(at + 16, stat.ctime.getTime())
  })
  return ints
}
