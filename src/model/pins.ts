// Pinned paths ("available offline"): every file at or below a pinned path is fetched
// whole in the background and its blocks are never evicted. Files that arrive later
// below a pinned directory are pinned too. Kept in a local file, never replicated.
import { promises as fs } from 'fs'
import { BlockCache } from '../cache/block-cache'
import { ContentStore } from './content'
import { ContentRef } from './entry'
import { MergedIndex } from './merged-index'
import { saveJson } from '../json-file'

export interface PinProgress {
  paths: string[]
  bytesTotal: number // of pinned files (other members' content)
  bytesLocal: number
}

export class Pins {
  private paths = new Set<string>()
  private readonly fetching = new Set<string>()

  constructor(
    private readonly file: string,
    private readonly index: MergedIndex,
    private readonly content: ContentStore,
    private readonly cache: BlockCache,
    private readonly keepAll: boolean
  ) {}

  async load(): Promise<void> {
    try {
      this.paths = new Set(JSON.parse(await fs.readFile(this.file, 'utf8')) as string[])
    } catch {}
    if (this.keepAll) this.paths.add('/')
  }

  list(): string[] {
    return [...this.paths]
  }

  /** Files (other members' content) pinned if `extra` were pinned too. */
  pinnedRefs(extra?: string): ContentRef[] {
    const roots = extra ? [...this.paths, extra] : [...this.paths]
    const refs = new Map<string, ContentRef>()
    for (const root of roots) {
      if (!this.index.get(root)) continue
      for (const p of this.index.walk(root)) {
        const ref = this.index.get(p)?.entry.content
        if (ref && !this.content.isOwn(ref)) refs.set(`${ref.core}:${ref.blockOffset}`, ref)
      }
    }
    return [...refs.values()]
  }

  async set(paths: Set<string>): Promise<void> {
    this.paths = paths
    if (this.keepAll) this.paths.add('/')
    await saveJson(this.file, [...paths])
    this.refresh()
  }

  /** Tells the cache which blocks are pinned and starts fetching what is missing. */
  refresh(): void {
    const keys = new Set<string>()
    for (const ref of this.pinnedRefs()) {
      for (let i = 0; i < ref.blockLength; i++) keys.add(BlockCache.key(ref.core, ref.blockOffset + i))
      const id = `${ref.core}:${ref.blockOffset}`
      if (!this.fetching.has(id)) {
        this.fetching.add(id)
        this.content.fetchAll(ref)
      }
    }
    this.cache.setPinned(keys)
  }

  async progress(): Promise<PinProgress> {
    let bytesTotal = 0
    let bytesLocal = 0
    for (const ref of this.pinnedRefs()) {
      bytesTotal += ref.byteLength
      bytesLocal += await this.content.localBytes(ref)
    }
    return { paths: this.list(), bytesTotal, bytesLocal }
  }
}
