#!/usr/bin/env node
'use strict'
// Patches hypercore 11.37.1 (pinned in package.json). Idempotent; runs as postinstall.
//  - verified blocks go to their readers before the storage flush: hypercore resolved a
//    `get` only after the block, its tree nodes and its bitfield bit were written to
//    RocksDB, 3-5 ms per 1 MiB block here, which a reader waiting on a FUSE read paid on
//    every block it fetched (the time to first byte above all). The block's Merkle proof is
//    checked before it is handed out, as before; only the wait for the write is gone. If the
//    write fails, the block is simply not stored, and a later `get` fetches it again.
const fs = require('fs')
const path = require('path')

const root = path.join(path.dirname(require.resolve('hypercore/package.json')), 'lib')
const MARK = '/* tsyncfs: early block delivery */'

const patches = [
  {
    file: 'core.js',
    find: `      const ranges = bits.flush(tx, this.bitfield)

      await this.state.flush()
`,
    replace: `      const ranges = bits.flush(tx, this.bitfield)

      ${MARK}
      for (const op of verifies) {
        if (op !== null && op.bitfield && op.value) this.replicator._deliverVerifiedBlock(op.bitfield.start, op.value)
      }

      await this.state.flush()
`
  },
  {
    file: 'replicator.js',
    find: `  _resolveBlockRequest(tracker, index, value, req) {`,
    replace: `  ${MARK}
  // The request stays tracked (and its peer's request in flight) until the data's normal
  // path resolves it after the flush; a get attached in between is resolved then.
  _deliverVerifiedBlock(index, value) {
    const b = this._blocks.get(index)
    if (b && b.refs.length > 0) b.resolve(value)
  }

  _resolveBlockRequest(tracker, index, value, req) {`
  }
]

for (const { file, find, replace } of patches) {
  const target = path.join(root, file)
  const source = fs.readFileSync(target, 'utf8')
  if (source.includes(replace)) continue
  if (!source.includes(find)) {
    console.error(`patch-hypercore: ${file} does not have the expected code (hypercore version?)`)
    process.exit(1)
  }
  fs.writeFileSync(target, source.replace(find, replace))
}
