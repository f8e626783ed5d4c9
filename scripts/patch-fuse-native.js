#!/usr/bin/env node
'use strict'
// Patches fuse-native 2.2.6's C source and rebuilds the addon from source (node-gyp-build
// prefers build/Release over the prebuilt binary). Idempotent; runs as postinstall.
//  - utimens: fuse-native passes atime where mtime belongs (l->atime twice), so `cp -p`,
//    `rsync -a` and `tar x` would store the access time as the modification time.
//  - getxattr: `ls -l` asks for two attributes of every file (an ACL and an SELinux label)
//    that tsyncfs never has; only user.* names go to JavaScript, the others get ENOTSUP in
//    C, without a round trip to the event loop (listing 20,000 files: 3 round trips per
//    file became 1). ENOTSUP, not ENODATA: tsyncfs has no such namespaces, and `ls` then
//    stops asking for the rest of the file system (coreutils caches "unsupported" per
//    device), which saves two kernel round trips per file listed.
//  - stat cache: the stats JavaScript gives with readdir answer getattr in C for up to a
//    second, until JavaScript empties the cache (tsyncfs_stat_cache_clear, called whenever
//    the folder may have changed): `ls -l` and `find` then cost one round trip to the event
//    loop per directory, not one per file (about 0.1 ms each here).
const fs = require('fs')
const path = require('path')
const { execFileSync } = require('child_process')

const dir = path.dirname(require.resolve('fuse-native/package.json'))
const source = path.join(dir, 'fuse-native.c')
const built = path.join(dir, 'build', 'Release', 'fuse.node')
// Marks the patched source (src/fs/mount.ts tells a patched addon by tsyncfs_stat_cache_clear).
const MARKER = '/* patched by tsyncfs: utimens mtime, getxattr user.* only, stat cache */'

const USER_XATTRS_ONLY = `
#ifndef __APPLE__
#include <errno.h>
static int tsyncfs_getxattr (const char *path, const char *name, char *value, size_t size) {
  if (strncmp(name, "user.", 5) != 0) return -ENOTSUP;
  return fuse_native_getxattr(path, name, value, size);
}
#define TSYNCFS_GETXATTR tsyncfs_getxattr
#else
#define TSYNCFS_GETXATTR fuse_native_getxattr
#endif

FUSE_METHOD(listxattr,`

const STAT_CACHE = `
#include <stdatomic.h>
#include <limits.h>
#include <time.h>
#define TSYNCFS_SLOTS 16384
#define TSYNCFS_MAX_ENTRIES 16384 /* what a few listings need: full, it starts over */
#define TSYNCFS_TTL_NS 1000000000LL

typedef struct tsyncfs_stat_entry {
  struct tsyncfs_stat_entry *next;
  uint64_t hash;
  int64_t filled;
  struct stat st;
  char path[];
} tsyncfs_stat_entry_t;

static tsyncfs_stat_entry_t *tsyncfs_slots[TSYNCFS_SLOTS];
static pthread_rwlock_t tsyncfs_lock = PTHREAD_RWLOCK_INITIALIZER;
static _Atomic uint64_t tsyncfs_generation = 1;
static uint64_t tsyncfs_table_generation = 0;
static size_t tsyncfs_entries = 0;

static int64_t tsyncfs_now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t tsyncfs_hash (const char *s) {
  uint64_t h = 1469598103934665603ULL;
  while (*s) { h ^= (unsigned char) *s++; h *= 1099511628211ULL; }
  return h;
}

static tsyncfs_stat_entry_t *tsyncfs_find (const char *path, uint64_t h) {
  tsyncfs_stat_entry_t *e = tsyncfs_slots[h & (TSYNCFS_SLOTS - 1)];
  while (e && (e->hash != h || strcmp(e->path, path) != 0)) e = e->next;
  return e;
}

static void tsyncfs_free_all (void) {
  for (size_t i = 0; i < TSYNCFS_SLOTS; i++) {
    tsyncfs_stat_entry_t *e = tsyncfs_slots[i];
    while (e) { tsyncfs_stat_entry_t *next = e->next; free(e); e = next; }
    tsyncfs_slots[i] = NULL;
  }
  tsyncfs_entries = 0;
}

/* Called on the JavaScript thread, like tsyncfs_stat_cache_clear: no clear runs in between. */
static void tsyncfs_stat_put (const char *dir, const char *name, const struct stat *st) {
  char path[PATH_MAX];
  int n = snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name);
  if (n < 0 || n >= (int) sizeof(path)) return;
  uint64_t h = tsyncfs_hash(path);
  uint64_t generation = atomic_load(&tsyncfs_generation);
  pthread_rwlock_wrlock(&tsyncfs_lock);
  if (tsyncfs_table_generation != generation || tsyncfs_entries >= TSYNCFS_MAX_ENTRIES) {
    tsyncfs_free_all();
    tsyncfs_table_generation = generation;
  }
  tsyncfs_stat_entry_t *e = tsyncfs_find(path, h);
  if (!e && (e = malloc(sizeof(*e) + n + 1)) != NULL) {
    memcpy(e->path, path, n + 1);
    e->hash = h;
    e->next = tsyncfs_slots[h & (TSYNCFS_SLOTS - 1)];
    tsyncfs_slots[h & (TSYNCFS_SLOTS - 1)] = e;
    tsyncfs_entries++;
  }
  if (e) { e->st = *st; e->filled = tsyncfs_now(); }
  pthread_rwlock_unlock(&tsyncfs_lock);
}

static int tsyncfs_stat_get (const char *path, struct stat *st) {
  int found = 0;
  uint64_t h = tsyncfs_hash(path);
  uint64_t generation = atomic_load(&tsyncfs_generation);
  pthread_rwlock_rdlock(&tsyncfs_lock);
  if (tsyncfs_table_generation == generation) {
    tsyncfs_stat_entry_t *e = tsyncfs_find(path, h);
    if (e && tsyncfs_now() - e->filled < TSYNCFS_TTL_NS) { *st = e->st; found = 1; }
  }
  pthread_rwlock_unlock(&tsyncfs_lock);
  return found;
}

NAPI_METHOD(tsyncfs_stat_cache_clear) {
  atomic_fetch_add(&tsyncfs_generation, 1);
  return NULL;
}

static int tsyncfs_getattr (const char *path, struct stat *stat) {
  if (tsyncfs_stat_get(path, stat)) return 0;
  return fuse_native_getattr(path, stat);
}

FUSE_METHOD(fgetattr,`

const PATCHES = [
  ['FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)', 'FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)'],
  ['\nFUSE_METHOD(listxattr,', USER_XATTRS_ONLY],
  ['ops.getxattr = fuse_native_getxattr;', 'ops.getxattr = TSYNCFS_GETXATTR;'],
  ['\nFUSE_METHOD(fgetattr,', STAT_CACHE],
  ['      int err = l->readdir_filler((char *) l->buf, name, (struct stat *) &st, 0);',
    '      tsyncfs_stat_put(l->path, name, &st);\n      int err = l->readdir_filler((char *) l->buf, name, (struct stat *) &st, 0);'],
  ['if (implemented[op_getattr]) ops.getattr = fuse_native_getattr;', 'if (implemented[op_getattr]) ops.getattr = tsyncfs_getattr;'],
  ['  NAPI_EXPORT_FUNCTION(fuse_native_mount)\n', '  NAPI_EXPORT_FUNCTION(fuse_native_mount)\n  NAPI_EXPORT_FUNCTION(tsyncfs_stat_cache_clear)\n'],
  ['#include <uv.h>\n', `${MARKER}\n#include <uv.h>\n`]
]

// The patches apply to fuse-native's own source, kept beside it on the first run, so that
// a changed patch replaces the old one instead of stacking on it.
const pristine = source + '.orig'
const current = fs.readFileSync(source, 'utf8')
if (!fs.existsSync(pristine)) {
  if (current.includes('patched by tsyncfs')) throw new Error(`${source} was patched by an older tsyncfs: reinstall fuse-native (npm ci)`)
  fs.writeFileSync(pristine, current)
}
let text = fs.readFileSync(pristine, 'utf8')
for (const [from, to] of PATCHES) {
  if (!text.includes(from)) throw new Error(`fuse-native.c changed: cannot find "${from.trim()}" to patch`)
  text = text.replace(from, to)
}
if (text !== current) fs.writeFileSync(source, text)

// Also when an earlier rebuild failed after the source was patched: the addon is older.
const stale = !fs.existsSync(built) || fs.statSync(built).mtimeMs < fs.statSync(source).mtimeMs
if (text !== current || stale) {
  execFileSync('npm', ['rebuild', 'fuse-native'], {
    stdio: 'inherit',
    cwd: path.join(__dirname, '..'),
    env: { ...process.env, npm_config_build_from_source: 'true' }
  })
}
if (!fs.existsSync(built)) throw new Error('fuse-native was not rebuilt: ' + built + ' is missing')
console.log('fuse-native: patched and built')
