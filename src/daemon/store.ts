// The corestore every daemon (mount or seed) keeps a folder's cores in.
import path from 'path'
import Corestore from 'corestore'
import Hypercore from 'hypercore'
import Rache from 'rache'

/** RocksDB's memtable (and so its WAL) is 64 MiB by default, and a flush holds it twice on
 *  disk for a moment: more than the cache's stated overhead. 8 MiB keeps that small. */
const WRITE_BUFFER_BYTES = 8 * 1024 * 1024
/** No blob relocation in background compactions (docs/design.md, "Blob garbage collection
 *  only where the cache deletes"): the cache's own compactions still collect. */
const BACKGROUND_BLOB_GC_AGE = 0
/** Decoded hyperbee keys and nodes kept, for all logs together (each log would otherwise
 *  keep up to 65,536 of its own). Few: a node holds its value, and a group record's value
 *  is up to 256 entries (60-95 KiB). With 4,096, 60,000 files kept 22 MiB of records that
 *  the index had already taken (heap snapshot). A log written in groups has a few hundred
 *  keys per 100,000 files, and a history stream reads each block once. */
const DECODED_NODES = 256

export function openStore(dir: string): Corestore {
  const storage = Hypercore.defaultStorage(path.join(dir, 'cores'), { writeBufferSize: WRITE_BUFFER_BYTES, blobGarbageCollectionAgeCutOff: BACKGROUND_BLOB_GC_AGE })
  return new Corestore(storage, { globalCache: new Rache({ maxSize: DECODED_NODES }) })
}
