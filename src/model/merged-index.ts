// The merged view of every member's log: one in-memory index, updated per path as
// entries arrive, so getattr and readdir never ask N drives.
import { Entry } from './entry'
import { conflictName, resolve, Resolution } from './resolve'

export interface VisibleNode {
  entry: Entry
  implicit: boolean // a directory shown only because something lives below it
  source: string // the path whose resolution produced this node
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/')
  return i <= 0 ? '/' : path.slice(0, i)
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1)
}

export class MergedIndex {
  // Memory matters here: one path costs its candidates, its visible node and its name in
  // the parent's map, so a path with one device's entry keeps a one-element array (not a
  // Map), `produced` holds only paths that produce more than themselves, entries have one
  // shape, and the device and core keys every entry repeats are shared strings.
  private readonly candidates = new Map<string, Entry[]>()
  private readonly visible = new Map<string, VisibleNode>()
  /** Each directory's children by name, with their visible nodes: a listing with stats
   *  then costs no lookup by full path per child (`find` on 100,000 files spent most of its
   *  time there). Kept equal to `visible` by setVisible and link. */
  private readonly children = new Map<string, Map<string, VisibleNode>>()
  private readonly produced = new Map<string, string[]>()
  private readonly interned = new Map<string, string>()
  private readonly conflicted = new Set<string>()
  private readonly changeListeners: Array<(paths: readonly string[]) => void> = []

  constructor() {
    const root: Entry = { type: 'dir', mode: 0o755, mtime: Date.now(), size: 0, vv: {}, device: '' }
    this.visible.set('/', { entry: root, implicit: true, source: '/' })
    this.children.set('/', new Map())
  }

  /** Calls `listener` after every put, with the paths whose visible node may have changed
   *  (the path itself, the conflict copies it produces or produced, and the implicit
   *  directories that appeared or went with them). */
  onChange(listener: (paths: readonly string[]) => void): void {
    this.changeListeners.push(listener)
  }

  /** Calls the change listeners with paths whose visible node or shown stat may have
   *  changed: after every put, and for a file written here, shown as staged until it is
   *  retired. */
  announce(paths: readonly string[]): void {
    for (const listener of this.changeListeners) listener(paths)
  }

  /** Record `device`'s latest entry for `path`. */
  put(device: string, path: string, entry: Entry): void {
    entry = this.stored(device, entry)
    const list = this.candidates.get(path)
    if (!list) this.candidates.set(path, [entry])
    else {
      const i = list.findIndex((e) => e.device === entry.device)
      if (i >= 0) list[i] = entry
      else list.push(entry)
    }
    this.announce(this.refresh(path))
  }

  candidatesOf(path: string): Entry[] {
    return [...(this.candidates.get(path) ?? [])]
  }

  /** A copy built as one literal: entries made by spreads or decoded from the logs each
   *  had a hidden class of their own in V8 (about 290 bytes a path). */
  private stored(device: string, e: Entry): Entry {
    const c = e.content
    const content = c
      ? { core: this.intern(c.core), blockOffset: c.blockOffset, blockLength: c.blockLength, byteOffset: c.byteOffset, byteLength: c.byteLength, blockSize: c.blockSize }
      : c
    return { type: e.type, mode: e.mode, mtime: e.mtime, size: e.size, vv: e.vv, device: this.intern(device), deleted: e.deleted, content, hash: e.hash, target: e.target }
  }

  private intern(s: string): string {
    const shared = this.interned.get(s)
    if (shared !== undefined) return shared
    this.interned.set(s, s)
    return s
  }

  resolution(path: string): Resolution {
    return resolve(this.candidatesOf(path))
  }

  /** The conflict copies a path's concurrent versions produce, by name. */
  conflictCopies(path: string): Array<[string, Entry]> {
    return this.resolution(path).conflicts.map((loser) => [conflictName(path, loser), loser])
  }

  get(path: string): VisibleNode | undefined {
    return this.visible.get(path)
  }

  list(dir: string): string[] {
    return [...(this.children.get(dir)?.keys() ?? [])]
  }

  /** A directory's children and their visible nodes; read it before the index changes. */
  childNodes(dir: string): ReadonlyMap<string, VisibleNode> {
    return this.children.get(dir) ?? NO_CHILDREN
  }

  /** Every visible path at or below `dir`, parents before children. */
  *walk(dir: string): Generator<string> {
    yield dir
    for (const [name, node] of [...this.childNodes(dir)]) {
      const child = dir === '/' ? '/' + name : dir + '/' + name
      if (node.entry.type === 'dir') yield* this.walk(child)
      else yield child
    }
  }

  /** Paths whose versions are concurrent and not yet settled by a writer. */
  conflictedPaths(): string[] {
    return [...this.conflicted]
  }

  *nodes(): Generator<[string, VisibleNode]> {
    yield* this.visible
  }

  /** Shows what `path` resolves to now; returns the paths it showed before or shows now,
   *  and the implicit directories that appeared or went. */
  private refresh(path: string): string[] {
    const implicit: string[] = []
    const res = this.resolution(path)
    if (res.conflicts.length) this.conflicted.add(path)
    else this.conflicted.delete(path)
    const next = new Map<string, Entry>()
    if (res.winner) next.set(path, res.winner)
    for (const loser of res.conflicts) next.set(conflictName(path, loser), loser)
    const before = this.produced.get(path) ?? [path]
    for (const old of before) {
      if (!next.has(old) && this.visible.get(old)?.source === path) this.remove(old, implicit)
    }
    for (const [p, entry] of next) this.show(p, entry, path, implicit)
    if (next.size === 1 && next.has(path)) this.produced.delete(path)
    else this.produced.set(path, [...next.keys()])
    return [...new Set([...before, ...next.keys(), ...implicit])]
  }

  private show(path: string, entry: Entry, source: string, implicit: string[]): void {
    const existing = this.visible.get(path)
    // A real entry at a path beats a conflict copy that happens to derive the same name.
    if (existing && !existing.implicit && existing.source === path && source !== path) return
    this.setVisible(path, { entry, implicit: false, source })
    if (entry.type === 'dir' && !this.children.has(path)) this.children.set(path, new Map())
    if (entry.type !== 'dir' && this.children.get(path)?.size === 0) this.children.delete(path)
    this.link(path, implicit)
  }

  private link(path: string, implicit: string[]): void {
    let child = path
    while (child !== '/') {
      const parent = parentOf(child)
      let siblings = this.children.get(parent)
      if (!siblings) this.children.set(parent, (siblings = new Map()))
      const node = this.visible.get(child)!
      siblings.set(baseName(child), node)
      if (this.visible.has(parent)) return
      const implicitDir: Entry = { type: 'dir', mode: 0o755, mtime: node.entry.mtime, size: 0, vv: {}, device: '' }
      this.setVisible(parent, { entry: implicitDir, implicit: true, source: parent })
      implicit.push(parent)
      child = parent
    }
  }

  /** Shows `node` at `path`, also in its parent's children if it is listed there. */
  private setVisible(path: string, node: VisibleNode): void {
    this.visible.set(path, node)
    const siblings = path === '/' ? undefined : this.children.get(parentOf(path))
    const name = baseName(path)
    if (siblings?.has(name)) siblings.set(name, node)
  }

  private remove(path: string, implicit: string[]): void {
    const node = this.visible.get(path)
    if (!node) return
    if ((this.children.get(path)?.size ?? 0) > 0) {
      // Something still lives below: keep the directory, implicitly.
      const mtime = node.entry.mtime
      const implicitDir: Entry = { type: 'dir', mode: 0o755, mtime, size: 0, vv: {}, device: '' }
      this.setVisible(path, { entry: node.entry.type === 'dir' ? node.entry : implicitDir, implicit: true, source: path })
      return
    }
    this.visible.delete(path)
    this.children.delete(path)
    let dir = parentOf(path)
    this.children.get(dir)?.delete(baseName(path))
    // Drop implicit parents that became empty.
    while (dir !== '/') {
      const parent = this.visible.get(dir)
      if (!parent?.implicit || (this.children.get(dir)?.size ?? 0) > 0) return
      if (this.resolution(dir).winner) return
      this.visible.delete(dir)
      this.children.delete(dir)
      implicit.push(dir)
      const up = parentOf(dir)
      this.children.get(up)?.delete(baseName(dir))
      dir = up
    }
  }
}

const NO_CHILDREN: ReadonlyMap<string, VisibleNode> = new Map()
