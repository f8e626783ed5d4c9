// Warm reads answered on FUSE's own threads: the patched addon (scripts/patch-fuse-native.js)
// reads and decrypts a read copy itself when every block a read covers has one, so a warm
// read costs no round trip to the event loop, and the decryption runs beside it instead of
// on it. This side tells the addon which handle reads which copy file, and mirrors which
// blocks have a whole copy; everything else still goes to JavaScript.
import type { CopyMirror } from '../cache/read-copies'

export interface DirectReadBinding {
  tsyncfs_copies_reset(key: Buffer, slot: number): void
  tsyncfs_copies_core(core: number, fd: number, nonce: Buffer): void
  tsyncfs_copies_mark(core: number, index: number, present: boolean): void
  tsyncfs_copies_open(fh: number, core: number, base: number, size: number): void
  tsyncfs_copies_close(fh: number): void
  tsyncfs_copies_drain(out: Uint32Array): number
}

/** Where a handle's bytes lie: in `core`'s copy file from byte `base`, `size` of them. */
export interface DirectRange {
  core: string
  base: number
  size: number
}

const DRAIN_PAIRS = 4096
const MAX_CORES = 4096 // as many as the addon has room for

export class DirectReads implements CopyMirror {
  private readonly ids = new Map<string, number>()
  private readonly cores: string[] = []
  private readonly drained = new Uint32Array(DRAIN_PAIRS * 2)

  constructor(private readonly addon: DirectReadBinding) {}

  static available(addon: Partial<DirectReadBinding>): addon is DirectReadBinding {
    return typeof addon.tsyncfs_copies_reset === 'function'
  }

  reset(key: Buffer, slot: number): void {
    this.addon.tsyncfs_copies_reset(key, slot)
    this.ids.clear()
    this.cores.length = 0
  }

  /** The addon's number for a core; undefined past its room (those reads stay here). */
  private id(core: string): number | undefined {
    let id = this.ids.get(core)
    if (id === undefined && this.cores.length < MAX_CORES) {
      id = this.cores.push(core) - 1
      this.ids.set(core, id)
    }
    return id
  }

  addFile(core: string, fd: number, nonce: Buffer): void {
    const id = this.id(core)
    if (id !== undefined) this.addon.tsyncfs_copies_core(id, fd, nonce)
  }

  mark(core: string, index: number, present: boolean): void {
    const id = this.ids.get(core)
    if (id !== undefined) this.addon.tsyncfs_copies_mark(id, index, present)
  }

  drainRead(): Array<[string, number]> {
    const read: Array<[string, number]> = []
    let n: number
    do {
      n = this.addon.tsyncfs_copies_drain(this.drained)
      for (let i = 0; i < n; i++) read.push([this.cores[this.drained[2 * i]], this.drained[2 * i + 1]])
    } while (n === DRAIN_PAIRS)
    return read
  }

  /** A handle was opened: its reads go to the addon whenever the copies cover them. */
  open(fh: number, range: DirectRange | null): void {
    const id = range ? this.id(range.core) : undefined
    if (range && id !== undefined) this.addon.tsyncfs_copies_open(fh, id, range.base, range.size)
  }

  /** Before the handle's release reaches the model: the addon forgets it first. */
  release(fh: number): void {
    this.addon.tsyncfs_copies_close(fh)
  }
}
