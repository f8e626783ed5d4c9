// Compacting one core's RocksDB ranges with blob garbage collection forced. The store is
// opened with RocksDB's background blob GC off (daemon/store.ts): left on, every background
// compaction rewrote the live blocks of the oldest blob files, about 9 s of CPU per GiB
// downloaded. Only the cache ever deletes blocks, and it compacts the cores that lost
// some through here, so the space of evicted blocks still comes back.
import { createRequire } from 'module'
import Hypercore from 'hypercore'

// The key prefixes must be those of the hypercore-storage copy that hypercore loads.
const fromHypercore = createRequire(require.resolve('hypercore'))
const keys = fromHypercore('hypercore-storage/lib/keys.js') as typeof import('hypercore-storage/lib/keys.js')

/** rocksdb-native's garbageCollectionPolicy.FORCE */
const FORCE = 1
/** Blobs in the oldest quarter of blob files are rewritten: RocksDB's default cut-off. */
const GC = { blobGarbageCollectionPolicy: FORCE, blobGarbageCollectionAgeCutoff: 0.25 }

export async function compactCore(core: Hypercore): Promise<void> {
  const storage = core.core?.state?.storage
  if (!storage) return
  const { corePointer, dataPointer } = storage.core
  await Promise.all([
    storage.db.compactRange(keys.core.core(corePointer), keys.core.core(corePointer), GC),
    storage.db.compactRange(keys.core.data(dataPointer), keys.core.data(dataPointer), GC)
  ])
}
