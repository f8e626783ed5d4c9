#!/usr/bin/env node
'use strict'
// Patches fuse-native 2.2.6's C source and rebuilds the addon from source (node-gyp-build
// prefers build/Release over the prebuilt binary). Idempotent; runs as postinstall.
//  - utimens: fuse-native passes atime where mtime belongs (l->atime twice), so `cp -p`,
//    `rsync -a` and `tar x` would store the access time as the modification time.
//  - getxattr: `ls -l` asks for two attributes of every file (an ACL and an SELinux label)
//    that tsyncfs never has; only user.* names go to JavaScript, the others get ENODATA in
//    C, without a round trip to the event loop (listing 20,000 files: 3 round trips per
//    file became 1).
const fs = require('fs')
const path = require('path')
const { execFileSync } = require('child_process')

const dir = path.dirname(require.resolve('fuse-native/package.json'))
const source = path.join(dir, 'fuse-native.c')
const built = path.join(dir, 'build', 'Release', 'fuse.node')
// src/fs/mount.ts checks for this line to tell a patched addon from an unpatched one.
const MARKER = '/* patched by tsyncfs: utimens mtime, getxattr user.* only */'

const USER_XATTRS_ONLY = `
#ifndef __APPLE__
#include <errno.h>
static int tsyncfs_getxattr (const char *path, const char *name, char *value, size_t size) {
  if (strncmp(name, "user.", 5) != 0) return -ENODATA;
  return fuse_native_getxattr(path, name, value, size);
}
#define TSYNCFS_GETXATTR tsyncfs_getxattr
#else
#define TSYNCFS_GETXATTR fuse_native_getxattr
#endif

FUSE_METHOD(listxattr,`

const PATCHES = [
  ['FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)', 'FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)'],
  ['\nFUSE_METHOD(listxattr,', USER_XATTRS_ONLY],
  ['ops.getxattr = fuse_native_getxattr;', 'ops.getxattr = TSYNCFS_GETXATTR;'],
  ['#include <uv.h>\n', `${MARKER}\n#include <uv.h>\n`]
]

const original = fs.readFileSync(source, 'utf8')
let text = original
for (const [from, to] of PATCHES) {
  if (text.includes(to)) continue // patched before
  if (!text.includes(from)) throw new Error(`fuse-native.c changed: cannot find "${from.trim()}" to patch`)
  text = text.replace(from, to)
}
if (text !== original) fs.writeFileSync(source, text)

// Also when an earlier rebuild failed after the source was patched: the addon is older.
const stale = !fs.existsSync(built) || fs.statSync(built).mtimeMs < fs.statSync(source).mtimeMs
if (text !== original || stale) {
  execFileSync('npm', ['rebuild', 'fuse-native'], {
    stdio: 'inherit',
    cwd: path.join(__dirname, '..'),
    env: { ...process.env, npm_config_build_from_source: 'true' }
  })
}
if (!fs.existsSync(built)) throw new Error('fuse-native was not rebuilt: ' + built + ' is missing')
console.log('fuse-native: patched and built')
