#!/usr/bin/env node
'use strict'
// fuse-native 2.2.6 passes atime where mtime belongs to utimens (fuse-native.c sends
// l->atime twice), so `cp -p`, `rsync -a` and `tar x` would store the access time as the
// modification time. Patch the one line and rebuild the addon from source; node-gyp-build
// prefers build/Release over the prebuilt binary. Idempotent; runs as postinstall.
const fs = require('fs')
const path = require('path')
const { execFileSync } = require('child_process')

const dir = path.dirname(require.resolve('fuse-native/package.json'))
const source = path.join(dir, 'fuse-native.c')
const built = path.join(dir, 'build', 'Release', 'fuse.node')
const BUG = 'FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)'
const FIX = 'FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)'

const text = fs.readFileSync(source, 'utf8')
if (text.includes(BUG)) fs.writeFileSync(source, text.replace(BUG, FIX))
else if (!text.includes(FIX)) throw new Error('fuse-native.c changed: cannot find the utimens line to patch')

if (text.includes(BUG) || !fs.existsSync(built)) {
  execFileSync('npm', ['rebuild', 'fuse-native'], {
    stdio: 'inherit',
    cwd: path.join(__dirname, '..'),
    env: { ...process.env, npm_config_build_from_source: 'true' }
  })
}
if (!fs.existsSync(built)) throw new Error('fuse-native was not rebuilt: ' + built + ' is missing')
console.log('fuse-native: utimens patched and built')
