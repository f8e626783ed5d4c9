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
//  - stat cache: the stats JavaScript gives with readdir, and those it gives for getattr
//    and create (tsyncfs_stat_cache_put), answer getattr in C for up to a second, until
//    JavaScript forgets the path (tsyncfs_stat_cache_forget, whenever the path may have
//    changed) or empties the cache (tsyncfs_stat_cache_clear, a rename): `ls -l` and `find`
//    then cost one round trip to the event loop per directory, not one per file (about 0.1
//    ms each here), and a new file's directory and the stat after its create none.
//  - direct reads: a read of a file whose blocks all have a read copy (src/cache/read-copies.ts)
//    is served here, on FUSE's threads: one pread of the copy and an AES-256-CTR pass, the
//    same cipher the JavaScript side writes with (Node's own OpenSSL, whose symbols Node
//    exports to addons: AES-NI here, about 3x libsodium's XChaCha20), and no round trip to
//    the event loop. JavaScript says which handles read which copy file at
//    which offset (src/fs/direct-reads.ts), which blocks have a copy, and drains the blocks
//    read so that the cache's LRU order stays true. Anything else goes to JavaScript.
//    Such a handle reads a committed version, so its flush (each close(2)) has nothing to
//    write back and is answered here too: through JavaScript it waited behind the read's own
//    aftermath there (its read copy, the read-ahead), 14 ms in one traced first-byte read.
//  - listings: a directory made or listed here (tsyncfs_stat_cache_listing) keeps a hash of
//    each child's path; a lookup of a name not in it is answered ENOENT in C (the lookup
//    before every create). JavaScript reports every path whose existence may change, with
//    whether it exists (tsyncfs_stat_cache_forget), which keeps the listings exact.
//  - worker pool: libfuse 2.9's loop gives every request in flight a thread of its own, and
//    ends a worker once more than ten are idle (with 16 writers it started and ended
//    thousands). tsyncfs_loop_mt lets four workers read or work at once, so that requests
//    queue in the kernel and a worker that replied takes the next without sleeping; each
//    request busy for 50 ms (a read waiting for a peer) lets one more run. Workers stay
//    until the loop ends, so fuse-native's state per thread (a uv_async handle, which libuv
//    walks at every wake-up of the event loop) is made once per worker, not per request.
//  - readdir: its stats may come packed in one Uint32Array, which src/fs/ops.ts fills from the
//    index's child nodes (index.js passes it on as it is).
//  - malloc_trim: glibc keeps freed memory for reuse, and after a 1 GiB transfer the daemon
//    held about 30 MiB of it for good; tsyncfs_malloc_trim gives it back (src/daemon/heap.ts
//    calls it when the JS heap grows). Node has no binding for it.
//  - kernel view: replies pass through a channel of the loop's own, which mirrors the node
//    ids the kernel holds for each (parent, name); tsyncfs_kernel_changed tells the kernel
//    of changes made other than through the mount, on a thread of its own, so that it may
//    keep names and stats for a minute (src/fs/kernel-cache.ts; docs/design.md, "The kernel
//    keeps names and stats for a minute").
const fs = require('fs')
const path = require('path')
const { execFileSync } = require('child_process')
const { patch } = require('./patch-file')

const dir = path.dirname(require.resolve('fuse-native/package.json'))
const source = path.join(dir, 'fuse-native.c')
const built = path.join(dir, 'build', 'Release', 'fuse.node')
// Marks the patched source (src/fs/mount.ts tells a patched addon by tsyncfs_stat_cache_clear).
const MARKER = '/* patched by tsyncfs: utimens mtime, getxattr user.* only, stat cache, direct reads and their flushes, malloc_trim, worker pool, packed readdir stats, kernel view */'

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
/* Entries live in one arena, taken in turn and let go all at once when the table starts
   over: \`find\` of 100,000 files stored each stat with a malloc and freed it soon after. */
#define TSYNCFS_ARENA_BYTES (TSYNCFS_MAX_ENTRIES * 256)
#define TSYNCFS_TTL_NS 1000000000LL

typedef struct tsyncfs_stat_entry {
  struct tsyncfs_stat_entry *next;
  uint64_t hash;
  int64_t filled;
  struct stat st;
  char path[];
} tsyncfs_stat_entry_t;

static tsyncfs_stat_entry_t *tsyncfs_slots[TSYNCFS_SLOTS];
static char *tsyncfs_arena = NULL;
static size_t tsyncfs_arena_used = 0;
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

/* Where the path's entry is linked (or would be): its slot's head or a predecessor's next. */
static tsyncfs_stat_entry_t **tsyncfs_find_ref (const char *path, uint64_t h) {
  tsyncfs_stat_entry_t **ref = &tsyncfs_slots[h & (TSYNCFS_SLOTS - 1)];
  while (*ref && ((*ref)->hash != h || strcmp((*ref)->path, path) != 0)) ref = &(*ref)->next;
  return ref;
}

static tsyncfs_stat_entry_t *tsyncfs_find (const char *path, uint64_t h) {
  return *tsyncfs_find_ref(path, h);
}

static void tsyncfs_free_stats (void) {
  memset(tsyncfs_slots, 0, sizeof(tsyncfs_slots));
  tsyncfs_arena_used = 0;
  tsyncfs_entries = 0;
}

/* Room for an entry with a path of n bytes, NULL if the arena is full (or not there). */
static tsyncfs_stat_entry_t *tsyncfs_arena_take (size_t n) {
  size_t bytes = (sizeof(tsyncfs_stat_entry_t) + n + 1 + 7) & ~(size_t) 7;
  if (tsyncfs_arena == NULL) tsyncfs_arena = malloc(TSYNCFS_ARENA_BYTES);
  if (tsyncfs_arena == NULL || tsyncfs_arena_used + bytes > TSYNCFS_ARENA_BYTES) return NULL;
  tsyncfs_stat_entry_t *e = (tsyncfs_stat_entry_t *) (tsyncfs_arena + tsyncfs_arena_used);
  tsyncfs_arena_used += bytes;
  return e;
}

/* Listings: the directories whose every child JavaScript has named (a hash of each child's
   path), so that a lookup of any other name in them is answered ENOENT here. A new file's
   name is looked up before its create, and that lookup was one of the five round trips to
   JavaScript a new file cost. JavaScript keeps a listing true: each path whose existence
   may have changed is reported (tsyncfs_stat_cache_forget), which adds it to its parent's
   listing, or drops that listing when the path is gone. A hash shared by two names can
   only send a lookup to JavaScript, never answer one wrongly. */
#define TSYNCFS_LISTING_SLOTS 4096
#define TSYNCFS_MAX_LISTINGS 65536
#define TSYNCFS_MAX_LISTED (1 << 19) /* child hashes in all listings: a listing that would pass it is dropped */

typedef struct tsyncfs_listing {
  struct tsyncfs_listing *next;
  uint64_t hash;
  size_t count;
  size_t capacity; /* a power of two; a 0 in children is a free slot */
  uint64_t *children;
  char path[];
} tsyncfs_listing_t;

static tsyncfs_listing_t *tsyncfs_listing_slots[TSYNCFS_LISTING_SLOTS];
static size_t tsyncfs_listings = 0;
static size_t tsyncfs_listed = 0;

static uint64_t tsyncfs_child_hash (const char *path) {
  uint64_t h = tsyncfs_hash(path);
  return h == 0 ? 1 : h;
}

static tsyncfs_listing_t **tsyncfs_listing_ref (const char *dir, uint64_t h) {
  tsyncfs_listing_t **ref = &tsyncfs_listing_slots[h & (TSYNCFS_LISTING_SLOTS - 1)];
  while (*ref && ((*ref)->hash != h || strcmp((*ref)->path, dir) != 0)) ref = &(*ref)->next;
  return ref;
}

static void tsyncfs_listing_free (tsyncfs_listing_t **ref) {
  tsyncfs_listing_t *l = *ref;
  *ref = l->next;
  tsyncfs_listed -= l->count;
  tsyncfs_listings--;
  free(l->children);
  free(l);
}

static void tsyncfs_free_listings (void) {
  for (size_t i = 0; i < TSYNCFS_LISTING_SLOTS; i++) {
    while (tsyncfs_listing_slots[i]) tsyncfs_listing_free(&tsyncfs_listing_slots[i]);
  }
}

static int tsyncfs_listing_has (const tsyncfs_listing_t *l, uint64_t child) {
  for (size_t i = child & (l->capacity - 1); l->children[i] != 0; i = (i + 1) & (l->capacity - 1)) {
    if (l->children[i] == child) return 1;
  }
  return 0;
}

static void tsyncfs_listing_insert (uint64_t *children, size_t capacity, uint64_t child) {
  size_t i = child & (capacity - 1);
  while (children[i] != 0 && children[i] != child) i = (i + 1) & (capacity - 1);
  children[i] = child;
}

/* Adds a child; 0 if there was no room (the caller drops the listing). */
static int tsyncfs_listing_add (tsyncfs_listing_t *l, uint64_t child) {
  if (tsyncfs_listing_has(l, child)) return 1;
  if (tsyncfs_listed >= TSYNCFS_MAX_LISTED) return 0;
  if (2 * (l->count + 1) > l->capacity) {
    size_t capacity = 2 * l->capacity;
    uint64_t *children = calloc(capacity, sizeof(uint64_t));
    if (children == NULL) return 0;
    for (size_t i = 0; i < l->capacity; i++) {
      if (l->children[i] != 0) tsyncfs_listing_insert(children, capacity, l->children[i]);
    }
    free(l->children);
    l->children = children;
    l->capacity = capacity;
  }
  tsyncfs_listing_insert(l->children, l->capacity, child);
  l->count++;
  tsyncfs_listed++;
  return 1;
}

/* With the write lock: empties the table and the listings if JavaScript cleared them. */
static void tsyncfs_sync_generation (void) {
  uint64_t generation = atomic_load(&tsyncfs_generation);
  if (tsyncfs_table_generation == generation) return;
  tsyncfs_free_stats();
  tsyncfs_free_listings();
  tsyncfs_table_generation = generation;
}

/* Where the listing of an absolute path's parent is linked (or would be); NULL for "/". */
static tsyncfs_listing_t **tsyncfs_parent_listing_ref (const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL || slash[1] == 0 || strcmp(path, "/") == 0) return NULL;
  char dir[PATH_MAX];
  size_t n = slash == path ? 1 : (size_t) (slash - path);
  if (n >= sizeof(dir)) return NULL;
  memcpy(dir, path, n);
  dir[n] = 0;
  return tsyncfs_listing_ref(dir, tsyncfs_hash(dir));
}

/* The path of a name in dir, into buf; its length, as snprintf gives it. */
static int tsyncfs_child_path (const char *dir, const char *name, char *buf, size_t size) {
  size_t d = strcmp(dir, "/") == 0 ? 0 : strlen(dir);
  size_t n = strlen(name);
  if (d + 1 + n >= size) return (int) (d + 1 + n); /* does not fit, as snprintf would say */
  memcpy(buf, dir, d);
  buf[d] = '/';
  memcpy(buf + d + 1, name, n + 1);
  return (int) (d + 1 + n);
}

/* With the write lock: a new entry for the path (of n bytes, hash h), linked; NULL if there
   is no memory. A full arena starts the table over. */
static tsyncfs_stat_entry_t *tsyncfs_stat_link (const char *path, size_t n, uint64_t h) {
  tsyncfs_stat_entry_t *e = tsyncfs_arena_take(n);
  if (e == NULL) {
    tsyncfs_free_stats();
    if ((e = tsyncfs_arena_take(n)) == NULL) return NULL;
  }
  memcpy(e->path, path, n + 1);
  e->hash = h;
  e->next = tsyncfs_slots[h & (TSYNCFS_SLOTS - 1)];
  tsyncfs_slots[h & (TSYNCFS_SLOTS - 1)] = e;
  tsyncfs_entries++;
  return e;
}

/* Called on the JavaScript thread, like tsyncfs_stat_cache_clear and _forget: none runs in between. */
static void tsyncfs_stat_put_path (const char *path, const struct stat *st) {
  size_t n = strlen(path);
  uint64_t h = tsyncfs_hash(path);
  pthread_rwlock_wrlock(&tsyncfs_lock);
  tsyncfs_sync_generation();
  if (tsyncfs_entries >= TSYNCFS_MAX_ENTRIES) tsyncfs_free_stats();
  tsyncfs_stat_entry_t *e = tsyncfs_find(path, h);
  if (e == NULL) e = tsyncfs_stat_link(path, n, h);
  if (e) { e->st = *st; e->filled = tsyncfs_now(); }
  pthread_rwlock_unlock(&tsyncfs_lock);
}

static void tsyncfs_stat_put (const char *dir, const char *name, const struct stat *st) {
  char path[PATH_MAX];
  int n = tsyncfs_child_path(dir, name, path, sizeof(path));
  if (n >= 0 && n < (int) sizeof(path)) tsyncfs_stat_put_path(path, st);
}

/* 1: the path's stat, into st; -ENOENT: its parent's listing has no such name; 0: ask JavaScript. */
static int tsyncfs_stat_get (const char *path, struct stat *st, int listings) {
  int found = 0;
  uint64_t h = tsyncfs_hash(path);
  uint64_t generation = atomic_load(&tsyncfs_generation);
  pthread_rwlock_rdlock(&tsyncfs_lock);
  if (tsyncfs_table_generation == generation) {
    tsyncfs_stat_entry_t *e = tsyncfs_find(path, h);
    tsyncfs_listing_t **parent;
    if (e && tsyncfs_now() - e->filled < TSYNCFS_TTL_NS) {
      *st = e->st;
      found = 1;
    } else if (listings && (parent = tsyncfs_parent_listing_ref(path)) != NULL) {
      if (*parent && !tsyncfs_listing_has(*parent, tsyncfs_child_hash(path))) found = -ENOENT;
    }
  }
  pthread_rwlock_unlock(&tsyncfs_lock);
  return found;
}

NAPI_METHOD(tsyncfs_stat_cache_clear) {
  atomic_fetch_add(&tsyncfs_generation, 1);
  return NULL;
}

/* (path, stat as fuse-native's Uint32Array): a stat JavaScript just gave for the path. */
NAPI_METHOD(tsyncfs_stat_cache_put) {
  NAPI_ARGV(2)
  NAPI_ARGV_UTF8(path, PATH_MAX, 0)
  NAPI_ARGV_BUFFER_CAST(uint32_t *, ints, 1)
  if (path_len >= PATH_MAX - 1 || ints_len < 18 * sizeof(uint32_t)) return NULL; /* never a truncated path */
  struct stat st;
  memset(&st, 0, sizeof(st));
  populate_stat(ints, &st);
  tsyncfs_stat_put_path(path, &st);
  return NULL;
}

/* (path, exists): the path's stat may have changed, and it exists now or not. */
NAPI_METHOD(tsyncfs_stat_cache_forget) {
  NAPI_ARGV(2)
  NAPI_ARGV_UTF8(path, PATH_MAX, 0)
  bool exists = false;
  napi_get_value_bool(env, argv[1], &exists);
  if (path_len >= PATH_MAX - 1) { atomic_fetch_add(&tsyncfs_generation, 1); return NULL; }
  uint64_t h = tsyncfs_hash(path);
  pthread_rwlock_wrlock(&tsyncfs_lock);
  tsyncfs_sync_generation();
  tsyncfs_stat_entry_t **ref = tsyncfs_find_ref(path, h);
  if (*ref) {
    *ref = (*ref)->next; /* its arena space returns when the table starts over */
  }
  tsyncfs_listing_t **own = tsyncfs_listing_ref(path, h);
  if (*own) tsyncfs_listing_free(own);
  tsyncfs_listing_t **parent = tsyncfs_parent_listing_ref(path);
  if (parent && *parent && !(exists && tsyncfs_listing_add(*parent, tsyncfs_child_hash(path)))) tsyncfs_listing_free(parent);
  pthread_rwlock_unlock(&tsyncfs_lock);
  return NULL;
}

/* (dir, names joined by "/"): every child the directory has now. */
NAPI_METHOD(tsyncfs_stat_cache_listing) {
  NAPI_ARGV(2)
  NAPI_ARGV_UTF8(dir, PATH_MAX, 0)
  NAPI_ARGV_UTF8_MALLOC(names, 1)
  if (dir_len >= PATH_MAX - 1 || dir[0] != '/') { free(names); return NULL; }
  uint64_t h = tsyncfs_hash(dir);
  pthread_rwlock_wrlock(&tsyncfs_lock);
  tsyncfs_sync_generation();
  tsyncfs_listing_t **ref = tsyncfs_listing_ref(dir, h);
  if (*ref) tsyncfs_listing_free(ref);
  if (tsyncfs_listings >= TSYNCFS_MAX_LISTINGS) tsyncfs_free_listings();
  tsyncfs_listing_t *l = calloc(1, sizeof(*l) + dir_len + 1);
  if (l != NULL) {
    memcpy(l->path, dir, dir_len + 1);
    l->hash = h;
    l->capacity = 16;
    l->children = calloc(l->capacity, sizeof(uint64_t));
    l->next = tsyncfs_listing_slots[h & (TSYNCFS_LISTING_SLOTS - 1)];
    tsyncfs_listing_slots[h & (TSYNCFS_LISTING_SLOTS - 1)] = l;
    tsyncfs_listings++;
    int complete = l->children != NULL;
    char path[PATH_MAX];
    for (char *name = names; complete && names_len > 0 && name != NULL; ) {
      char *end = strchr(name, '/');
      if (end) *end = 0;
      int n = tsyncfs_child_path(dir, name, path, sizeof(path));
      complete = n > 0 && n < (int) sizeof(path) - 1 && tsyncfs_listing_add(l, tsyncfs_child_hash(path));
      name = end ? end + 1 : NULL;
    }
    if (!complete) tsyncfs_listing_free(tsyncfs_listing_ref(dir, h));
  }
  pthread_rwlock_unlock(&tsyncfs_lock);
  free(names);
  return NULL;
}

static int tsyncfs_getattr (const char *path, struct stat *stat) {
  int known = tsyncfs_stat_get(path, stat, 1);
  if (known != 0) return known == 1 ? 0 : known;
  return fuse_native_getattr(path, stat);
}

/* fstat, and libfuse's stat of a file it just created: fuse-native answers both with getattr. */
static int fuse_native_fgetattr (const char *path, struct stat *stat, struct fuse_file_info *info);
static int tsyncfs_fgetattr (const char *path, struct stat *stat, struct fuse_file_info *info) {
  if (tsyncfs_stat_get(path, stat, 0) == 1) return 0;
  return fuse_native_fgetattr(path, stat, info);
}

FUSE_METHOD(fgetattr,`

const DIRECT_READS = `
#include <openssl/evp.h>
#include <stdatomic.h>
#define TSYNCFS_MAX_CORES 4096
#define TSYNCFS_AES_BLOCK 16
#define TSYNCFS_KEY_BYTES 32
#define TSYNCFS_HANDLE_SLOTS 1024

typedef struct {
  int ready; /* its copy file is open */
  int fd;
  unsigned char nonce[TSYNCFS_AES_BLOCK]; /* the counter block of byte 0 */
  _Atomic uint64_t *present; /* a bit per block: its copy is whole */
  _Atomic uint64_t *touched; /* a bit per block: read here since the last drain */
  size_t words;
} tsyncfs_core_t;

typedef struct tsyncfs_handle {
  struct tsyncfs_handle *next;
  uint64_t fh;
  uint32_t core;
  int64_t base; /* where the file's first byte lies in the copy file */
  int64_t size;
} tsyncfs_handle_t;

/* Readers hold the lock shared while they read a copy; taking it exclusively (a block's
   copy dropped, a bitmap grown, a handle added or removed) waits for them, so JavaScript
   frees a copy's space only once no reader can be using it. */
static pthread_rwlock_t tsyncfs_copies_lock = PTHREAD_RWLOCK_INITIALIZER;
static tsyncfs_core_t tsyncfs_cores[TSYNCFS_MAX_CORES];
static uint32_t tsyncfs_core_count = 0;
static tsyncfs_handle_t *tsyncfs_handles[TSYNCFS_HANDLE_SLOTS];
static unsigned char tsyncfs_copy_key[TSYNCFS_KEY_BYTES];
static EVP_CIPHER *tsyncfs_aes = NULL; /* fetched once: an implicit fetch per read costs a lookup */
static int64_t tsyncfs_copy_slot = 0; /* 0: direct reads are off */

static tsyncfs_handle_t **tsyncfs_handle_ref (uint64_t fh) {
  tsyncfs_handle_t **ref = &tsyncfs_handles[fh % TSYNCFS_HANDLE_SLOTS];
  while (*ref && (*ref)->fh != fh) ref = &(*ref)->next;
  return ref;
}

static int tsyncfs_covers (tsyncfs_core_t *c, int64_t first, int64_t last) {
  if (last >= (int64_t) (c->words * 64)) return 0;
  for (int64_t i = first; i <= last; i++) {
    if (!(atomic_load(&c->present[i / 64]) & (1ULL << (i % 64)))) return 0;
  }
  return 1;
}

/* XORs the keystream at byte \`position\` of the copy file over buf, as read-copies.ts
   does: AES-256-CTR from the counter block nonce + position / 16 (128-bit big-endian). */
static int tsyncfs_xor (tsyncfs_core_t *c, unsigned char *buf, size_t len, int64_t position) {
  unsigned char iv[TSYNCFS_AES_BLOCK], skipped[TSYNCFS_AES_BLOCK] = {0};
  uint64_t add = (uint64_t) position / TSYNCFS_AES_BLOCK;
  unsigned carry = 0;
  for (int i = TSYNCFS_AES_BLOCK - 1; i >= 0; i--) {
    unsigned sum = c->nonce[i] + (unsigned) (add & 0xff) + carry;
    iv[i] = (unsigned char) sum; carry = sum >> 8; add >>= 8;
  }
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int out = 0, ok = ctx && len <= INT_MAX && EVP_EncryptInit_ex2(ctx, tsyncfs_aes, tsyncfs_copy_key, iv, NULL);
  int skip = (int) (position % TSYNCFS_AES_BLOCK); /* a read that starts inside a counter block */
  if (ok && skip) ok = EVP_EncryptUpdate(ctx, skipped, &out, skipped, skip);
  if (ok) ok = EVP_EncryptUpdate(ctx, buf, &out, buf, (int) len);
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

/* Bytes read, or -1 when JavaScript must answer (no such handle, a block without a copy). */
static int tsyncfs_direct_read (uint64_t fh, char *buf, size_t len, off_t offset) {
  int res = -1;
  pthread_rwlock_rdlock(&tsyncfs_copies_lock);
  tsyncfs_handle_t *h = tsyncfs_copy_slot ? *tsyncfs_handle_ref(fh) : NULL;
  if (h && offset >= h->size) res = 0;
  else if (h) {
    tsyncfs_core_t *c = &tsyncfs_cores[h->core];
    int64_t end = offset + (int64_t) len < h->size ? offset + (int64_t) len : h->size;
    int64_t from = h->base + offset;
    int64_t first = from / tsyncfs_copy_slot, last = (h->base + end - 1) / tsyncfs_copy_slot;
    size_t want = end - offset, got = 0;
    if (c->ready && tsyncfs_covers(c, first, last)) {
      while (got < want) {
        ssize_t n = pread(c->fd, buf + got, want - got, from + got);
        if (n <= 0) break;
        got += n;
      }
    }
    if (got == want && want > 0 && tsyncfs_xor(c, (unsigned char *) buf, want, from)) {
      for (int64_t i = first; i <= last; i++) atomic_fetch_or(&c->touched[i / 64], 1ULL << (i % 64));
      res = (int) want;
    }
  }
  pthread_rwlock_unlock(&tsyncfs_copies_lock);
  return res;
}

static int tsyncfs_read (const char *path, char *buf, size_t len, off_t offset, struct fuse_file_info *info) {
  int res = info ? tsyncfs_direct_read(info->fh, buf, len, offset) : -1;
  return res >= 0 ? res : fuse_native_read(path, buf, len, offset, info);
}

static int64_t tsyncfs_int64 (napi_env env, napi_value value) {
  double n = 0;
  napi_get_value_double(env, value, &n);
  return (int64_t) n;
}

static void tsyncfs_copies_free (void) {
  for (uint32_t i = 0; i < tsyncfs_core_count; i++) {
    free(tsyncfs_cores[i].present);
    free(tsyncfs_cores[i].touched);
  }
  memset(tsyncfs_cores, 0, sizeof(tsyncfs_cores));
  tsyncfs_core_count = 0;
  for (size_t i = 0; i < TSYNCFS_HANDLE_SLOTS; i++) {
    while (tsyncfs_handles[i]) { tsyncfs_handle_t *next = tsyncfs_handles[i]->next; free(tsyncfs_handles[i]); tsyncfs_handles[i] = next; }
  }
}

/* (key, slot): starts over with a new key and block slot size; slot 0 turns direct reads off. */
NAPI_METHOD(tsyncfs_copies_reset) {
  NAPI_ARGV(2)
  NAPI_ARGV_BUFFER(key, 0)
  int64_t slot = tsyncfs_int64(env, argv[1]);
  if (!tsyncfs_aes) tsyncfs_aes = EVP_CIPHER_fetch(NULL, "AES-256-CTR", NULL);
  if (!tsyncfs_aes || key_len != sizeof(tsyncfs_copy_key)) slot = 0;
  pthread_rwlock_wrlock(&tsyncfs_copies_lock);
  tsyncfs_copies_free();
  if (slot) memcpy(tsyncfs_copy_key, key, sizeof(tsyncfs_copy_key));
  tsyncfs_copy_slot = slot;
  pthread_rwlock_unlock(&tsyncfs_copies_lock);
  return NULL;
}

/* (core, fd, nonce): the core's copy file is open. JavaScript numbers the cores. */
NAPI_METHOD(tsyncfs_copies_core) {
  NAPI_ARGV(3)
  NAPI_ARGV_UINT32(core, 0)
  NAPI_ARGV_INT32(fd, 1)
  NAPI_ARGV_BUFFER(nonce, 2)
  pthread_rwlock_wrlock(&tsyncfs_copies_lock);
  if (core < TSYNCFS_MAX_CORES && nonce_len == TSYNCFS_AES_BLOCK) {
    tsyncfs_cores[core].fd = fd;
    memcpy(tsyncfs_cores[core].nonce, nonce, nonce_len);
    tsyncfs_cores[core].ready = 1;
    if (core >= tsyncfs_core_count) tsyncfs_core_count = core + 1;
  }
  pthread_rwlock_unlock(&tsyncfs_copies_lock);
  return NULL;
}

static int tsyncfs_grow (tsyncfs_core_t *c, size_t words) {
  if (words <= c->words) return 1;
  size_t n = c->words ? c->words : 64;
  while (n < words) n *= 2;
  _Atomic uint64_t *present = calloc(n, sizeof(uint64_t)), *touched = calloc(n, sizeof(uint64_t));
  if (!present || !touched) { free(present); free(touched); return 0; }
  for (size_t i = 0; i < c->words; i++) { present[i] = atomic_load(&c->present[i]); touched[i] = atomic_load(&c->touched[i]); }
  free(c->present); free(c->touched);
  c->present = present; c->touched = touched; c->words = n;
  return 1;
}

/* (core, block, present): a block's copy is whole, or is about to go. Returns once no
   reader can still be reading a copy that went. */
NAPI_METHOD(tsyncfs_copies_mark) {
  NAPI_ARGV(3)
  NAPI_ARGV_UINT32(core, 0)
  int64_t block = tsyncfs_int64(env, argv[1]);
  bool present = false;
  napi_get_value_bool(env, argv[2], &present);
  /* Exclusive only to unmark or to grow the bitmap: a new bit needs no reader to finish.
     The counts and sizes read here change only on this (JavaScript's) thread. */
  int grows = core >= tsyncfs_core_count || block / 64 >= (int64_t) tsyncfs_cores[core].words;
  if (present && !grows) pthread_rwlock_rdlock(&tsyncfs_copies_lock);
  else pthread_rwlock_wrlock(&tsyncfs_copies_lock);
  if (core < tsyncfs_core_count && block >= 0) {
    tsyncfs_core_t *c = &tsyncfs_cores[core];
    if (present && tsyncfs_grow(c, block / 64 + 1)) atomic_fetch_or(&c->present[block / 64], 1ULL << (block % 64));
    else if (!present && block / 64 < (int64_t) c->words) atomic_fetch_and(&c->present[block / 64], ~(1ULL << (block % 64)));
  }
  pthread_rwlock_unlock(&tsyncfs_copies_lock);
  return NULL;
}

/* (fh, core, base, size): reads of this handle come from the core's copy file at base. */
NAPI_METHOD(tsyncfs_copies_open) {
  NAPI_ARGV(4)
  int64_t fh = tsyncfs_int64(env, argv[0]);
  NAPI_ARGV_UINT32(core, 1)
  int64_t base = tsyncfs_int64(env, argv[2]);
  int64_t size = tsyncfs_int64(env, argv[3]);
  pthread_rwlock_wrlock(&tsyncfs_copies_lock);
  tsyncfs_handle_t *h = *tsyncfs_handle_ref(fh);
  if (!h && core < TSYNCFS_MAX_CORES && (h = malloc(sizeof(*h))) != NULL) {
    h->fh = fh;
    h->next = tsyncfs_handles[fh % TSYNCFS_HANDLE_SLOTS];
    tsyncfs_handles[fh % TSYNCFS_HANDLE_SLOTS] = h;
  }
  if (h) { h->core = core; h->base = base; h->size = size; }
  pthread_rwlock_unlock(&tsyncfs_copies_lock);
  return NULL;
}

/* (fh): the handle is released. */
NAPI_METHOD(tsyncfs_copies_close) {
  NAPI_ARGV(1)
  int64_t fh = tsyncfs_int64(env, argv[0]);
  pthread_rwlock_wrlock(&tsyncfs_copies_lock);
  tsyncfs_handle_t **ref = tsyncfs_handle_ref(fh);
  tsyncfs_handle_t *h = *ref;
  if (h) { *ref = h->next; free(h); }
  pthread_rwlock_unlock(&tsyncfs_copies_lock);
  return NULL;
}

/* (out: Uint32Array of pairs) -> how many (core, block) pairs of blocks read were written. */
NAPI_METHOD(tsyncfs_copies_drain) {
  NAPI_ARGV(1)
  uint32_t *out;
  size_t out_length = 0;
  napi_typedarray_type type;
  napi_value array_buffer;
  size_t offset;
  napi_get_typedarray_info(env, argv[0], &type, &out_length, (void **) &out, &array_buffer, &offset);
  size_t room = type == napi_uint32_array ? out_length / 2 : 0, n = 0;
  pthread_rwlock_rdlock(&tsyncfs_copies_lock);
  for (uint32_t core = 0; core < tsyncfs_core_count && n < room; core++) {
    tsyncfs_core_t *c = &tsyncfs_cores[core];
    for (size_t w = 0; w < c->words && n < room; w++) {
      uint64_t bits = atomic_exchange(&c->touched[w], 0);
      for (int b = 0; b < 64 && bits; b++) {
        if (!(bits & (1ULL << b))) continue;
        bits &= ~(1ULL << b);
        if (n < room) { out[2 * n] = core; out[2 * n + 1] = (uint32_t) (w * 64 + b); n++; }
        else atomic_fetch_or(&c->touched[w], 1ULL << b); /* next drain */
      }
    }
  }
  pthread_rwlock_unlock(&tsyncfs_copies_lock);
  NAPI_RETURN_UINT32((uint32_t) n)
}

FUSE_METHOD(readdir,`

const QUIET_FLUSH = `
/* A handle the addon reads through never holds staged bytes (direct-reads.ts registers
   only those): its flush has nothing to write back. */
static int tsyncfs_flush (const char *path, struct fuse_file_info *info) {
  int reads_a_version = 0;
  if (info) {
    pthread_rwlock_rdlock(&tsyncfs_copies_lock);
    reads_a_version = *tsyncfs_handle_ref(info->fh) != NULL;
    pthread_rwlock_unlock(&tsyncfs_copies_lock);
  }
  return reads_a_version ? 0 : fuse_native_flush(path, info);
}

FUSE_METHOD_VOID(fsync,`

const MALLOC_TRIM = `
#ifdef __GLIBC__
#include <malloc.h>
#endif
NAPI_METHOD(tsyncfs_malloc_trim) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  return NULL;
}

FUSE_METHOD(readdir,`

const KERNEL_VIEW = `
/* The kernel's view of names. The kernel may keep names and stats for long (src/fs/mount.ts
   sets entry_timeout and attr_timeout), because a change made anywhere but through this
   mount (a peer's, or a conflict copy made from one) is told to it
   (fuse_lowlevel_notify_inval_*). Those take
   node ids, which libfuse's high-level API keeps to itself, so this view mirrors them from
   the requests and replies that pass through tsyncfs_loop_mt: an entry reply links a node
   id under (parent, name), a forget drops it, a rename or removal that succeeded moves or
   unlinks it. JavaScript reports changed paths (tsyncfs_kernel_changed); a thread of its
   own resolves and tells them, as writing a notice may wait for a request in flight in the
   same directory, which must never wait for it. */
#include <fuse_kernel.h>
#define TSYNCFS_KSLOTS (1 << 17)
int pthread_setname_np (pthread_t thread, const char *name); /* glibc's, declared only with _GNU_SOURCE */
#define TSYNCFS_KRECENT 256

typedef struct tsyncfs_knode {
  struct tsyncfs_knode *by_name;
  struct tsyncfs_knode *by_id;
  uint64_t nodeid;
  uint64_t parent; /* 0: under no name (removed, or replaced by a rename) */
  uint64_t nlookup;
  char *name;
} tsyncfs_knode_t;

typedef struct tsyncfs_knotice {
  struct tsyncfs_knotice *next;
  int gone; /* the name went: drop the entry too */
  char path[];
} tsyncfs_knotice_t;

static tsyncfs_knode_t *tsyncfs_knames[TSYNCFS_KSLOTS];
static tsyncfs_knode_t *tsyncfs_kids[TSYNCFS_KSLOTS];
static pthread_mutex_t tsyncfs_klock = PTHREAD_MUTEX_INITIALIZER;

/* Changes counted by JavaScript, with the hashes of the last TSYNCFS_KRECENT changed names:
   an entry that may hold what was true before a change to its name is not kept. */
static _Atomic uint64_t tsyncfs_kchanges = 0;
static _Atomic uint64_t tsyncfs_krecent[TSYNCFS_KRECENT];
static __thread const struct fuse_in_header *tsyncfs_krequest = NULL;
static __thread uint64_t tsyncfs_krequest_changes = 0;

static pthread_mutex_t tsyncfs_kqueue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tsyncfs_kqueue_cond = PTHREAD_COND_INITIALIZER;
static tsyncfs_knotice_t *tsyncfs_kqueue_head = NULL;
static tsyncfs_knotice_t **tsyncfs_kqueue_tail = &tsyncfs_kqueue_head;
static struct fuse_chan *tsyncfs_knotify_ch = NULL; /* while the notifier runs */
static int tsyncfs_knotify_stop = 0;
static pthread_t tsyncfs_knotifier;

static size_t tsyncfs_kname_slot (uint64_t parent, const char *name, size_t len) {
  uint64_t h = 14695981039346656037ULL ^ parent;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char) name[i]) * 1099511628211ULL;
  return h & (TSYNCFS_KSLOTS - 1);
}

static tsyncfs_knode_t **tsyncfs_kname_ref (uint64_t parent, const char *name, size_t len) {
  tsyncfs_knode_t **ref = &tsyncfs_knames[tsyncfs_kname_slot(parent, name, len)];
  while (*ref && !((*ref)->parent == parent && strncmp((*ref)->name, name, len) == 0 && (*ref)->name[len] == 0)) ref = &((*ref)->by_name);
  return ref;
}

static tsyncfs_knode_t **tsyncfs_kid_ref (uint64_t nodeid) {
  tsyncfs_knode_t **ref = &tsyncfs_kids[nodeid & (TSYNCFS_KSLOTS - 1)];
  while (*ref && (*ref)->nodeid != nodeid) ref = &((*ref)->by_id);
  return ref;
}

static void tsyncfs_kunlink (tsyncfs_knode_t *n) {
  if (n->parent == 0) return;
  tsyncfs_knode_t **ref = &tsyncfs_knames[tsyncfs_kname_slot(n->parent, n->name, strlen(n->name))];
  while (*ref && *ref != n) ref = &((*ref)->by_name);
  if (*ref) *ref = n->by_name;
  n->parent = 0;
  free(n->name);
  n->name = NULL;
}

/* n is now (parent, name), in place of any node that was. */
static void tsyncfs_klink (tsyncfs_knode_t *n, uint64_t parent, const char *name) {
  size_t len = strlen(name);
  tsyncfs_knode_t *there = *tsyncfs_kname_ref(parent, name, len);
  if (there == n) return;
  if (there) tsyncfs_kunlink(there);
  tsyncfs_kunlink(n);
  if ((n->name = malloc(len + 1)) == NULL) return;
  memcpy(n->name, name, len + 1);
  n->parent = parent;
  size_t slot = tsyncfs_kname_slot(parent, name, len);
  n->by_name = tsyncfs_knames[slot];
  tsyncfs_knames[slot] = n;
}

static void tsyncfs_kentry (uint64_t parent, const char *name, uint64_t nodeid) {
  if (nodeid == 0) return; /* a negative entry */
  tsyncfs_knode_t **ref = tsyncfs_kid_ref(nodeid);
  tsyncfs_knode_t *n = *ref;
  if (n == NULL) {
    if ((n = calloc(1, sizeof(*n))) == NULL) return;
    n->nodeid = nodeid;
    *ref = n;
  }
  n->nlookup++;
  tsyncfs_klink(n, parent, name);
}

static void tsyncfs_kforget (uint64_t nodeid, uint64_t count) {
  tsyncfs_knode_t **ref = tsyncfs_kid_ref(nodeid);
  tsyncfs_knode_t *n = *ref;
  if (n == NULL) return;
  n->nlookup = n->nlookup > count ? n->nlookup - count : 0;
  if (n->nlookup > 0) return;
  *ref = n->by_id;
  tsyncfs_kunlink(n);
  free(n);
}

static void tsyncfs_kclear (void) {
  for (size_t i = 0; i < TSYNCFS_KSLOTS; i++) {
    while (tsyncfs_kids[i]) {
      tsyncfs_knode_t *n = tsyncfs_kids[i];
      tsyncfs_kids[i] = n->by_id;
      free(n->name);
      free(n);
    }
    tsyncfs_knames[i] = NULL;
  }
}

/* On the worker thread, for a forget it read (no reply follows). */
static void tsyncfs_kforgets (const struct fuse_in_header *in) {
  pthread_mutex_lock(&tsyncfs_klock);
  if (in->opcode == FUSE_FORGET) {
    tsyncfs_kforget(in->nodeid, ((const struct fuse_forget_in *) (in + 1))->nlookup);
  } else {
    const struct fuse_batch_forget_in *batch = (const struct fuse_batch_forget_in *) (in + 1);
    const struct fuse_forget_one *one = (const struct fuse_forget_one *) (batch + 1);
    for (uint32_t i = 0; i < batch->count; i++) tsyncfs_kforget(one[i].nodeid, one[i].nlookup);
  }
  pthread_mutex_unlock(&tsyncfs_klock);
}

static tsyncfs_knotice_t *tsyncfs_knotice (int gone, const char *path) {
  size_t len = strlen(path);
  tsyncfs_knotice_t *notice = malloc(sizeof(*notice) + len + 1);
  if (notice == NULL) return NULL;
  notice->next = NULL;
  notice->gone = gone;
  memcpy(notice->path, path, len + 1);
  return notice;
}

/* Hands the notices from first to *last to the notifier, in one wake-up. */
static void tsyncfs_kenqueue (tsyncfs_knotice_t *first, tsyncfs_knotice_t **last) {
  if (first == NULL) return;
  pthread_mutex_lock(&tsyncfs_kqueue_lock);
  if (tsyncfs_knotify_ch != NULL) {
    *tsyncfs_kqueue_tail = first;
    tsyncfs_kqueue_tail = last;
    first = NULL;
    pthread_cond_signal(&tsyncfs_kqueue_cond);
  }
  pthread_mutex_unlock(&tsyncfs_kqueue_lock);
  while (first) {
    tsyncfs_knotice_t *next = first->next;
    free(first);
    first = next;
  }
}

/* Whether a change to name was counted since the request began (or too many to tell). */
static int tsyncfs_kchanged_since (uint64_t since, const char *name) {
  uint64_t now = atomic_load(&tsyncfs_kchanges);
  if (now == since) return 0;
  if (now - since >= TSYNCFS_KRECENT) return 1;
  uint64_t h = tsyncfs_hash(name);
  for (uint64_t seq = since + 1; seq <= now; seq++) {
    if (atomic_load(&tsyncfs_krecent[seq % TSYNCFS_KRECENT]) == h) return 1;
  }
  return atomic_load(&tsyncfs_kchanges) - since >= TSYNCFS_KRECENT; /* overwritten meanwhile */
}

/* The name a request creates, looks up or removes under its node. */
static const char *tsyncfs_krequest_name (const struct fuse_in_header *in) {
  const char *arg = (const char *) (in + 1);
  switch (in->opcode) {
    case FUSE_LOOKUP: case FUSE_SYMLINK: case FUSE_UNLINK: case FUSE_RMDIR: return arg;
    case FUSE_CREATE: return arg + sizeof(struct fuse_create_in);
    case FUSE_MKDIR: return arg + sizeof(struct fuse_mkdir_in);
    case FUSE_MKNOD: return arg + sizeof(struct fuse_mknod_in);
    case FUSE_LINK: return arg + sizeof(struct fuse_link_in);
    case FUSE_RENAME: return arg + sizeof(struct fuse_rename_in);
    default: return NULL;
  }
}

/* On the worker thread, before its reply leaves: the view as the reply will leave the
   kernel's. An entry that a change to its name may have made stale meanwhile is given
   with no time to keep it: the kernel looks it up again at its next use. (Telling the
   kernel to drop it after the reply would unhash a directory in use, someone's working
   directory, though it still exists.) */
static void tsyncfs_kreply (const struct fuse_in_header *in, const struct iovec *iov, size_t count) {
  const struct fuse_out_header *out = (const struct fuse_out_header *) iov[0].iov_base;
  const char *name = tsyncfs_krequest_name(in);
  if (name == NULL || out->unique != in->unique || out->error != 0) return;
  pthread_mutex_lock(&tsyncfs_klock);
  if (in->opcode == FUSE_UNLINK || in->opcode == FUSE_RMDIR) {
    tsyncfs_knode_t *n = *tsyncfs_kname_ref(in->nodeid, name, strlen(name));
    if (n) tsyncfs_kunlink(n);
  } else if (in->opcode == FUSE_RENAME) {
    const char *to = name + strlen(name) + 1;
    uint64_t dir = ((const struct fuse_rename_in *) (in + 1))->newdir;
    tsyncfs_knode_t *n = *tsyncfs_kname_ref(in->nodeid, name, strlen(name));
    tsyncfs_knode_t *there = *tsyncfs_kname_ref(dir, to, strlen(to));
    if (n) tsyncfs_klink(n, dir, to);
    else if (there) tsyncfs_kunlink(there);
  } else if (count >= 2 && iov[1].iov_len >= sizeof(struct fuse_entry_out)) {
    struct fuse_entry_out *entry = (struct fuse_entry_out *) iov[1].iov_base; /* libfuse's, writable */
    tsyncfs_kentry(in->nodeid, name, entry->nodeid);
    if (tsyncfs_kchanged_since(tsyncfs_krequest_changes, name)) {
      entry->entry_valid = entry->entry_valid_nsec = 0;
      entry->attr_valid = entry->attr_valid_nsec = 0;
    }
  }
  pthread_mutex_unlock(&tsyncfs_klock);
}

/* The channel replies go through: it sees each before the kernel does. */
static int tsyncfs_kchan_send (struct fuse_chan *ch, const struct iovec iov[], size_t count) {
  struct fuse_chan *kernel = (struct fuse_chan *) fuse_chan_data(ch);
  if (tsyncfs_krequest != NULL && count >= 1) tsyncfs_kreply(tsyncfs_krequest, iov, count);
  return fuse_chan_send(kernel, iov, count);
}

static struct fuse_chan_ops tsyncfs_kchan_ops = { .send = tsyncfs_kchan_send };

/* Around each request a worker processes. */
static void tsyncfs_kbegin (const struct fuse_buf *buf) {
  tsyncfs_krequest = (buf->flags & FUSE_BUF_IS_FD) ? NULL : (const struct fuse_in_header *) buf->mem;
  tsyncfs_krequest_changes = atomic_load(&tsyncfs_kchanges);
}

static void tsyncfs_kend (void) {
  tsyncfs_krequest = NULL;
}

/* Resolves a path to the node ids the kernel knows, under the view's lock: 0 if unknown. */
static void tsyncfs_kresolve (const char *path, uint64_t *parent, uint64_t *nodeid, const char **name) {
  uint64_t at = FUSE_ROOT_ID;
  *parent = 0;
  *nodeid = FUSE_ROOT_ID;
  *name = path;
  const char *p = path;
  while (*p == '/') p++;
  while (*p && at != 0) {
    const char *end = strchr(p, '/');
    size_t len = end ? (size_t) (end - p) : strlen(p);
    tsyncfs_knode_t *n = *tsyncfs_kname_ref(at, p, len);
    *parent = at;
    *name = p;
    at = n ? n->nodeid : 0;
    *nodeid = at;
    p += len;
    while (*p == '/') p++;
  }
  if (*p) *parent = 0; /* an ancestor is unknown: so is everything below it */
}

static void tsyncfs_knotify (struct fuse_chan *ch, tsyncfs_knotice_t *notice) {
  uint64_t parent, nodeid;
  const char *name;
  pthread_mutex_lock(&tsyncfs_klock);
  tsyncfs_kresolve(notice->path, &parent, &nodeid, &name);
  pthread_mutex_unlock(&tsyncfs_klock);
  /* Attributes only (offset -1): a new version's pages go at its next open (auto_cache). */
  if (nodeid != 0) fuse_lowlevel_notify_inval_inode(ch, nodeid, -1, 0);
  if (parent != 0 && notice->gone) fuse_lowlevel_notify_inval_entry(ch, parent, name, strlen(name));
}

static void* tsyncfs_knotify_loop (void *data) {
  struct fuse_chan *ch = (struct fuse_chan *) data;
  pthread_setname_np(pthread_self(), "tsyncfs-notify"); /* as top -H and /proc show it */
  pthread_mutex_lock(&tsyncfs_kqueue_lock);
  while (!tsyncfs_knotify_stop) {
    tsyncfs_knotice_t *notice = tsyncfs_kqueue_head;
    if (notice == NULL) {
      pthread_cond_wait(&tsyncfs_kqueue_cond, &tsyncfs_kqueue_lock);
      continue;
    }
    tsyncfs_kqueue_head = NULL;
    tsyncfs_kqueue_tail = &tsyncfs_kqueue_head;
    pthread_mutex_unlock(&tsyncfs_kqueue_lock);
    while (notice) {
      tsyncfs_knotice_t *next = notice->next;
      tsyncfs_knotify(ch, notice);
      free(notice);
      notice = next;
    }
    pthread_mutex_lock(&tsyncfs_kqueue_lock);
  }
  pthread_mutex_unlock(&tsyncfs_kqueue_lock);
  return NULL;
}

static int tsyncfs_knotify_start (struct fuse_chan *ch) {
  pthread_mutex_lock(&tsyncfs_kqueue_lock);
  tsyncfs_knotify_stop = 0;
  tsyncfs_knotify_ch = ch;
  pthread_mutex_unlock(&tsyncfs_kqueue_lock);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int err = pthread_create(&tsyncfs_knotifier, NULL, tsyncfs_knotify_loop, ch);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    pthread_mutex_lock(&tsyncfs_kqueue_lock);
    tsyncfs_knotify_ch = NULL;
    pthread_mutex_unlock(&tsyncfs_kqueue_lock);
  }
  return err;
}

/* After the workers ended: the notices left are dropped with the view. */
static void tsyncfs_knotify_end (int started) {
  pthread_mutex_lock(&tsyncfs_kqueue_lock);
  tsyncfs_knotify_stop = 1;
  tsyncfs_knotify_ch = NULL;
  pthread_cond_signal(&tsyncfs_kqueue_cond);
  pthread_mutex_unlock(&tsyncfs_kqueue_lock);
  if (started) pthread_join(tsyncfs_knotifier, NULL);
  while (tsyncfs_kqueue_head) {
    tsyncfs_knotice_t *notice = tsyncfs_kqueue_head;
    tsyncfs_kqueue_head = notice->next;
    free(notice);
  }
  tsyncfs_kqueue_tail = &tsyncfs_kqueue_head;
  pthread_mutex_lock(&tsyncfs_klock);
  tsyncfs_kclear();
  pthread_mutex_unlock(&tsyncfs_klock);
}

/* (changes): paths that changed other than through this mount, each as "+path" (it exists)
   or "-path" (it went), ended by a NUL. Each is counted before it is told, so that a reply
   racing the change is not kept (tsyncfs_kreply). */
NAPI_METHOD(tsyncfs_kernel_changed) {
  NAPI_ARGV(1)
  size_t size = 0;
  if (napi_get_value_string_utf8(env, argv[0], NULL, 0, &size) != napi_ok) return NULL;
  char *text = malloc(size + 1);
  if (text == NULL) return NULL;
  napi_get_value_string_utf8(env, argv[0], text, size + 1, &size);
  tsyncfs_knotice_t *first = NULL, **last = &first;
  for (char *at = text; at < text + size; at += strlen(at) + 1) {
    const char *path = at + 1;
    const char *slash = strrchr(path, '/');
    uint64_t seq = atomic_load(&tsyncfs_kchanges) + 1; /* only this thread counts */
    atomic_store(&tsyncfs_krecent[seq % TSYNCFS_KRECENT], tsyncfs_hash(slash ? slash + 1 : path));
    atomic_store(&tsyncfs_kchanges, seq);
    tsyncfs_knotice_t *notice = tsyncfs_knotice(at[0] == '-', path);
    if (notice == NULL) continue;
    *last = notice;
    last = &(notice->next);
  }
  free(text);
  tsyncfs_kenqueue(first, last);
  return NULL;
}

static void* start_fuse_thread (void *data) {`

const WORKER_POOL = `
/* libfuse 2.9's loop (fuse_loop_mt) starts a worker thread whenever none is idle, so every
   request in flight has a thread of its own, and every request costs that thread two sleeps
   and two wake-ups: in read(2) on /dev/fuse, and on its semaphore while JavaScript answers.
   This loop lets TSYNCFS_WORKERS workers read or work at once; further requests wait in the
   kernel's queue, where a worker that has just replied finds the next without sleeping.
   A request that takes long (a read waiting for a peer, an fsync waiting for a commit) must
   not hold the others back: a watchdog counts a request busy for TSYNCFS_SLOW_NS as slow,
   and each slow request lets one more worker run until it ends. Workers never end before
   the loop does (libfuse's started and ended thousands for 20,000 small files): spare ones
   wait on a condition variable, not in read(2), where the kernel would wake them. */
#include <signal.h>
#include <errno.h>
#include <fuse_kernel.h>
#define TSYNCFS_WORKERS 4
#define TSYNCFS_MAX_WORKERS 512
#define TSYNCFS_SLOW_NS (50 * 1000000ULL)

struct tsyncfs_loop;

typedef struct tsyncfs_worker {
  pthread_t thread;
  struct tsyncfs_loop *loop;
  struct tsyncfs_worker *next;
  int busy; /* processing a request, since started */
  int slow; /* that request counts as slow: it holds one unit of the limit's extra room */
  uint64_t started;
} tsyncfs_worker_t;

typedef struct tsyncfs_loop {
  struct fuse_session *se;
  struct fuse_chan *ch;
  struct fuse_chan *reply_ch; /* replies pass the kernel view on their way to ch */
  uv_mutex_t lock; /* guards the fields below and the workers' */
  uv_cond_t room; /* for parked workers: the limit grew, or the loop ends */
  uv_cond_t watch; /* for the watchdog: a request started while it slept, or a worker left */
  int reading; /* workers in read(2) */
  int busy; /* workers processing a request */
  int parked; /* workers waiting for room */
  int total;
  int limit; /* TSYNCFS_WORKERS plus one per slow request */
  int watching; /* the watchdog wakes by itself: nobody need signal it */
  int exiting;
  int error;
  tsyncfs_worker_t *workers;
} tsyncfs_loop_t;

static void* tsyncfs_work (void *data);

/* With the lock held. Signals stay with the process's main thread. */
static int tsyncfs_start_worker (tsyncfs_loop_t *loop) {
  if (loop->total >= TSYNCFS_MAX_WORKERS) return -1;
  tsyncfs_worker_t *w = calloc(1, sizeof(tsyncfs_worker_t));
  if (w == NULL) return -1;
  w->loop = loop;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int err = pthread_create(&(w->thread), NULL, tsyncfs_work, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    free(w);
    return -1;
  }
  w->next = loop->workers;
  loop->workers = w;
  loop->total++;
  return 0;
}

/* With the lock held: when nobody reads and there is room, one more worker reads. */
static void tsyncfs_keep_reading (tsyncfs_loop_t *loop) {
  if (loop->reading > 0 || loop->exiting || loop->reading + loop->busy >= loop->limit) return;
  if (loop->parked > 0) uv_cond_signal(&(loop->room));
  else tsyncfs_start_worker(loop);
}

static int tsyncfs_is_forget (const struct fuse_buf *buf) {
  if (buf->flags & FUSE_BUF_IS_FD) return 0;
  uint32_t opcode = ((const struct fuse_in_header *) buf->mem)->opcode;
  return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET;
}

/* With the lock held, around a request that needs a reply. */
static void tsyncfs_begin (tsyncfs_worker_t *w) {
  tsyncfs_loop_t *loop = w->loop;
  w->busy = 1;
  w->started = uv_hrtime();
  loop->busy++;
  tsyncfs_keep_reading(loop);
  if (!loop->watching) {
    loop->watching = 1;
    uv_cond_signal(&(loop->watch));
  }
}

static void tsyncfs_end (tsyncfs_worker_t *w) {
  w->busy = 0;
  w->loop->busy--;
  if (w->slow) {
    w->slow = 0;
    w->loop->limit--;
  }
}

static void* tsyncfs_work (void *data) {
  tsyncfs_worker_t *w = (tsyncfs_worker_t *) data;
  tsyncfs_loop_t *loop = w->loop;
  size_t size = fuse_chan_bufsize(loop->ch);
  char *mem = malloc(size);
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL); /* only read(2) may be cancelled */
  uv_mutex_lock(&(loop->lock));
  while (mem != NULL && !loop->exiting && !fuse_session_exited(loop->se)) {
    if (loop->reading + loop->busy >= loop->limit) {
      loop->parked++;
      uv_cond_wait(&(loop->room), &(loop->lock));
      loop->parked--;
      continue;
    }
    loop->reading++;
    uv_mutex_unlock(&(loop->lock));
    struct fuse_chan *ch = loop->ch;
    struct fuse_buf buf = { .mem = mem, .size = size };
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    int res = fuse_session_receive_buf(loop->se, &buf, &ch);
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    uv_mutex_lock(&(loop->lock));
    loop->reading--;
    if (res == -EINTR) continue;
    if (res <= 0) {
      if (res < 0) {
        fuse_session_exit(loop->se);
        loop->error = -1;
      }
      break;
    }
    /* Forgets need no reply and take no time: nobody else need read meanwhile. */
    int forget = tsyncfs_is_forget(&buf);
    if (!forget) tsyncfs_begin(w);
    uv_mutex_unlock(&(loop->lock));
    if (forget) tsyncfs_kforgets((const struct fuse_in_header *) buf.mem);
    tsyncfs_kbegin(&buf);
    fuse_session_process_buf(loop->se, &buf, loop->reply_ch ? loop->reply_ch : ch);
    tsyncfs_kend();
    uv_mutex_lock(&(loop->lock));
    if (!forget) tsyncfs_end(w);
  }
  uv_cond_signal(&(loop->watch)); /* the session may have ended */
  uv_mutex_unlock(&(loop->lock));
  free(mem);
  return NULL;
}

/* With the lock held: counts the requests busy for TSYNCFS_SLOW_NS as slow, each making
   room for one more worker. */
static void tsyncfs_count_slow (tsyncfs_loop_t *loop) {
  uint64_t now = uv_hrtime();
  for (tsyncfs_worker_t *w = loop->workers; w != NULL; w = w->next) {
    if (!w->busy || w->slow || now - w->started < TSYNCFS_SLOW_NS) continue;
    w->slow = 1;
    loop->limit++;
  }
  tsyncfs_keep_reading(loop);
}

static int tsyncfs_loop_mt (struct fuse *fuse) {
  tsyncfs_loop_t loop = { .se = fuse_get_session(fuse), .limit = TSYNCFS_WORKERS, .watching = 1 };
  loop.ch = fuse_session_next_chan(loop.se, NULL);
  if (fuse_start_cleanup_thread(fuse) != 0) return -1;
  loop.reply_ch = fuse_chan_new(&tsyncfs_kchan_ops, fuse_chan_fd(loop.ch), fuse_chan_bufsize(loop.ch), loop.ch);
  int notifying = loop.reply_ch != NULL && tsyncfs_knotify_start(loop.ch) == 0;
  uv_mutex_init(&(loop.lock));
  uv_cond_init(&(loop.room));
  uv_cond_init(&(loop.watch));

  uv_mutex_lock(&(loop.lock));
  int err = tsyncfs_start_worker(&loop);
  if (err == 0) {
    /* The watchdog: while requests are busy it looks every half of TSYNCFS_SLOW_NS; when
       none is, it sleeps until one starts. */
    while (!fuse_session_exited(loop.se)) {
      if (loop.busy == 0) {
        loop.watching = 0;
        uv_cond_wait(&(loop.watch), &(loop.lock));
      } else {
        uv_cond_timedwait(&(loop.watch), &(loop.lock), TSYNCFS_SLOW_NS / 2);
        tsyncfs_count_slow(&loop);
      }
    }
    loop.exiting = 1;
    uv_cond_broadcast(&(loop.room));
    for (tsyncfs_worker_t *w = loop.workers; w != NULL; w = w->next) pthread_cancel(w->thread);
  }
  uv_mutex_unlock(&(loop.lock));
  while (loop.workers != NULL) {
    tsyncfs_worker_t *w = loop.workers;
    loop.workers = w->next;
    pthread_join(w->thread, NULL);
    free(w);
  }
  uv_cond_destroy(&(loop.watch));
  uv_cond_destroy(&(loop.room));
  uv_mutex_destroy(&(loop.lock));
  tsyncfs_knotify_end(notifying);
  if (loop.reply_ch) fuse_chan_destroy(loop.reply_ch);
  fuse_stop_cleanup_thread(fuse);
  fuse_session_reset(loop.se);
  return err == 0 ? loop.error : -1;
}

static void* start_fuse_thread (void *data) {`

// readdir takes its stats packed in one Uint32Array (18 numbers per entry, fuse-native's
// layout) as well as one array per entry: src/fs/ops.ts writes them straight there, and a
// listing of 1,000 files costs no 1,000 typed arrays.
const READDIR_PACKED_LENGTH = `  uint32_t *packed_stats = NULL;
  size_t packed_bytes = 0;
  bool stats_in_array = false;
  napi_is_array(env, argv[3], &stats_in_array);
  if (!stats_in_array && napi_get_buffer_info(env, argv[3], (void **) &packed_stats, &packed_bytes) == napi_ok) {
    stats_length = (uint32_t) (packed_bytes / (18 * sizeof(uint32_t)));
  } else {
    packed_stats = NULL;
    napi_get_array_length(env, argv[3], &stats_length);
  }`

const READDIR_STAT = `
/* Entry i's stat as readdir got it: packed, or fuse-native's array of one Uint32Array per
   entry; NULL if it is not there. */
static uint32_t *tsyncfs_readdir_stat (napi_env env, napi_value stats, uint32_t *packed, uint32_t i) {
  if (packed != NULL) return packed + 18 * (size_t) i;
  napi_value stat;
  void *data = NULL;
  size_t bytes = 0;
  if (napi_get_element(env, stats, i, &stat) != napi_ok || napi_get_buffer_info(env, stat, &data, &bytes) != napi_ok) return NULL;
  return bytes >= 18 * sizeof(uint32_t) ? (uint32_t *) data : NULL;
}

FUSE_METHOD(readdir,`

const PATCHES = [
  ['FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)', 'FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)'],
  ['\nFUSE_METHOD(listxattr,', USER_XATTRS_ONLY],
  ['ops.getxattr = fuse_native_getxattr;', 'ops.getxattr = TSYNCFS_GETXATTR;'],
  ['\nFUSE_METHOD(fgetattr,', STAT_CACHE],
  ['      int err = l->readdir_filler((char *) l->buf, name, (struct stat *) &st, 0);',
    '      tsyncfs_stat_put(l->path, name, &st);\n      int err = l->readdir_filler((char *) l->buf, name, (struct stat *) &st, 0);'],
  ['  napi_get_array_length(env, argv[3], &stats_length);', READDIR_PACKED_LENGTH],
  [`      napi_value raw_stat;
      napi_get_element(env, raw_stats, i, &raw_stat);

      NAPI_BUFFER_CAST(uint32_t*, stats_array, raw_stat);`, `      uint32_t *stats_array = tsyncfs_readdir_stat(env, raw_stats, packed_stats, i);
      if (stats_array == NULL) break;`],
  ['if (implemented[op_getattr]) ops.getattr = fuse_native_getattr;', 'if (implemented[op_getattr]) ops.getattr = tsyncfs_getattr;'],
  ['if (implemented[op_fgetattr]) ops.fgetattr = fuse_native_fgetattr;', 'if (implemented[op_fgetattr]) ops.fgetattr = tsyncfs_fgetattr;'],
  ['\nFUSE_METHOD(readdir,', DIRECT_READS],
  ['\nFUSE_METHOD(readdir,', MALLOC_TRIM], // the anchor that DIRECT_READS ends with
  ['\nFUSE_METHOD(readdir,', READDIR_STAT], // and MALLOC_TRIM
  ['if (implemented[op_read]) ops.read = fuse_native_read;', 'if (implemented[op_read]) ops.read = tsyncfs_read;'],
  ['\nFUSE_METHOD_VOID(fsync,', QUIET_FLUSH],
  ['if (implemented[op_flush]) ops.flush = fuse_native_flush;', 'if (implemented[op_flush]) ops.flush = tsyncfs_flush;'],
  ['  NAPI_EXPORT_FUNCTION(fuse_native_mount)\n', '  NAPI_EXPORT_FUNCTION(fuse_native_mount)\n  NAPI_EXPORT_FUNCTION(tsyncfs_stat_cache_clear)\n  NAPI_EXPORT_FUNCTION(tsyncfs_stat_cache_put)\n  NAPI_EXPORT_FUNCTION(tsyncfs_stat_cache_forget)\n  NAPI_EXPORT_FUNCTION(tsyncfs_stat_cache_listing)\n  NAPI_EXPORT_FUNCTION(tsyncfs_malloc_trim)\n  NAPI_EXPORT_FUNCTION(tsyncfs_kernel_changed)\n' +
    ['reset', 'core', 'mark', 'open', 'close', 'drain'].map((name) => `  NAPI_EXPORT_FUNCTION(tsyncfs_copies_${name})\n`).join('')],
  ['\nstatic void* start_fuse_thread (void *data) {', KERNEL_VIEW],
  ['\nstatic void* start_fuse_thread (void *data) {', WORKER_POOL], // the anchor that KERNEL_VIEW ends with
  ['  fuse_loop_mt(ft->fuse);', '  tsyncfs_loop_mt(ft->fuse);'],
  ['#include <uv.h>\n', `${MARKER}\n#include <uv.h>\n`]
]

// binding.gyp is no longer patched (an older patch linked libsodium): put it back.
function restoreGyp () {
  const gyp = path.join(dir, 'binding.gyp')
  if (!fs.existsSync(gyp + '.orig')) return false
  fs.renameSync(gyp + '.orig', gyp)
  return true
}
// fuse-native's JavaScript would map packed readdir stats element by element.
const INDEX_PATCHES = [
  ['      if (stats) stats = stats.map(getStatArray)', '      if (stats && !ArrayBuffer.isView(stats)) stats = stats.map(getStatArray) // patched by tsyncfs: packed stats pass as they are']
]
patch(path.join(dir, 'index.js'), INDEX_PATCHES, 'patched by tsyncfs')

const changed = [patch(source, PATCHES, 'patched by tsyncfs'), restoreGyp()].some(Boolean)

// Also when an earlier rebuild failed after the source was patched: the addon is older.
const stale = !fs.existsSync(built) || fs.statSync(built).mtimeMs < fs.statSync(source).mtimeMs
if (changed || stale) {
  execFileSync('npm', ['rebuild', 'fuse-native'], {
    stdio: 'inherit',
    cwd: path.join(__dirname, '..'),
    env: { ...process.env, npm_config_build_from_source: 'true' }
  })
}
if (!fs.existsSync(built)) throw new Error('fuse-native was not rebuilt: ' + built + ' is missing')
console.log('fuse-native: patched and built')
