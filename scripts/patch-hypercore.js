#!/usr/bin/env node
'use strict'
// Patches hypercore 11.37.1 (pinned in package.json) with scripts/patch-file.js. Idempotent;
// runs as postinstall.
//  - verified blocks go to their readers before the storage flush: hypercore resolved a
//    `get` only after the block, its tree nodes and its bitfield bit were written to
//    RocksDB, 3-5 ms per 1 MiB block here, which a reader waiting on a FUSE read paid on
//    every block it fetched (the time to first byte above all). The block's Merkle proof is
//    checked before it is handed out, as before; only the wait for the write is gone. If the
//    write fails, the block is simply not stored, and a later `get` fetches it again.
const path = require('path')
const { patch } = require('./patch-file')

const lib = path.join(path.dirname(require.resolve('hypercore/package.json')), 'lib')
const MARK = '/* tsyncfs: early block delivery */'

patch(path.join(lib, 'core.js'), [[
  `      const ranges = bits.flush(tx, this.bitfield)

      await this.state.flush()
`,
  `      const ranges = bits.flush(tx, this.bitfield)

      ${MARK}
      for (const op of verifies) {
        if (op !== null && op.bitfield && op.value) this.replicator._deliverVerifiedBlock(op.bitfield.start, op.value)
      }

      await this.state.flush()
`
]], MARK)

patch(path.join(lib, 'replicator.js'), [[
  `  _resolveBlockRequest(tracker, index, value, req) {`,
  `  ${MARK}
  // The request stays tracked (and its peer's request in flight) until the data's normal
  // path resolves it after the flush; a get attached in between is resolved then.
  _deliverVerifiedBlock(index, value) {
    const b = this._blocks.get(index)
    if (b && b.refs.length > 0) b.resolve(value)
  }

  _resolveBlockRequest(tracker, index, value, req) {`
]], MARK)
