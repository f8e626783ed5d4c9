'use strict'
// The block cache: other members' content fetched from peers is kept on this disk up to
// --cache-size, least recently used blocks are evicted beyond it, pinned paths are
// fetched whole and never evicted, this device's own content is never evicted, and the
// bookkeeping survives restarts. --keep-all mirrors everything.
const test = require('brittle')
const path = require('path')
const fs = require('fs').promises
const { startTestnet, Device, newSecret, waitFor, sh, dataDirBytes } = require('./helpers')

const KiB = 1024
const MiB = 1024 * KiB
const LIMIT = 64 * MiB
const OVERHEAD = 48 * MiB // RocksDB WAL, blob files awaiting GC, read-ahead window
const READ_AHEAD = 8 * MiB // one read-ahead window: 8 blocks of 1 MiB
const BLOCK = require('../dist/model/content').BLOCK_SIZE
const mib = (n) => `${(n / MiB).toFixed(1)} MiB`

const stop = (d) => d.stop()

async function cacheStatus (d) {
  const res = await d.cli(['cache', d.mnt, '--json'])
  if (res.code !== 0) throw new Error(`cache on ${d.name} failed: ${res.stderr}`)
  return JSON.parse(res.stdout)
}

/** user.tsyncfs.local of a file: { local, size, text }. */
async function localOf (d, rel) {
  const res = await sh(`getfattr --only-values -n user.tsyncfs.local ${JSON.stringify(d.p(rel))}`)
  const m = /^(\d+)\/(\d+) bytes \((\d+\.\d)%\)$/.exec(res.stdout.trim())
  if (res.code !== 0 || !m) throw new Error(`getfattr on ${d.name}:${rel} failed: ${res.stderr || res.stdout}`)
  return { local: Number(m[1]), size: Number(m[2]), text: res.stdout.trim() }
}

/** Size of a data dir (dataDirBytes: apparent, read copies allocated) or its allocated
 *  size (du -sk, in bytes). */
async function du (dir, allocated = false) {
  if (!allocated) return dataDirBytes(dir)
  const res = await sh(`du -sk ${JSON.stringify(dir)} | cut -f1`)
  return Number(res.stdout.trim()) * 1024
}

/** Compares a file in a mount with its source in a child process; { ok, ms, out }. */
async function cmp (d, rel, source, timeout = 180000) {
  const started = Date.now()
  const res = await sh(`cmp ${JSON.stringify(source)} ${JSON.stringify(d.p(rel))}`, { timeout })
  return { ok: res.code === 0, ms: Date.now() - started, out: (res.stdout + res.stderr).trim() }
}

/** Samples a device's data dir size (every 250 ms) and cache accounting (every second)
 *  until stopped: RocksDB's transient files (WAL, blob files during compaction) live for
 *  well under a second. */
function sampler (d) {
  const s = { maxDisk: 0, maxLocal: 0, samples: 0, stopped: false, trace: [] }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
  const disk = (async () => {
    while (!s.stopped) {
      // The total, and how much of it is RocksDB blob files and WAL.
      const res = await sh(`find ${JSON.stringify(d.dataDir)} -type f \\( -name '*.blob' -o -name '*.log' \\) -printf '%f %s\\n'`)
      const files = res.stdout.trim().split('\n').filter(Boolean)
      const n = await dataDirBytes(d.dataDir)
      const sum = (ext) => files.filter((f) => f.split(' ')[0].endsWith(ext)).reduce((x, f) => x + Number(f.split(' ')[1]), 0)
      if (n > s.maxDisk) s.maxText = `${mib(n)}: blob files ${mib(sum('.blob'))}, WAL ${mib(sum('.log'))}`
      s.maxDisk = Math.max(s.maxDisk, n)
      if (s.samples++ % 4 === 0) s.trace.push(mib(n))
      await sleep(250)
    }
  })()
  const local = (async () => {
    while (!s.stopped) {
      const cache = await cacheStatus(d).catch(() => null)
      if (cache) s.maxLocal = Math.max(s.maxLocal, cache.localBytes)
      await sleep(1000)
    }
  })()
  s.stop = async () => { s.stopped = true; await Promise.all([disk, local]); return s }
  return s
}

/** Writes random sources outside the mount and copies them into it, all in a child process. */
async function writeFiles (d, files, timeout = 240000) {
  const cmds = []
  for (const [rel, { source, size }] of Object.entries(files)) {
    cmds.push(`mkdir -p ${JSON.stringify(path.dirname(d.p(rel)))}`)
    cmds.push(`head -c ${size} /dev/urandom > ${JSON.stringify(source)}`)
    cmds.push(`cp ${JSON.stringify(source)} ${JSON.stringify(d.p(rel))}`)
  }
  return sh(cmds.join(' && '), { timeout })
}

test('a 64 MiB cache stays bounded over 256 MiB of reads; evicted content is re-fetched, pins and own content stay, the cache survives a restart', { timeout: 400000 }, async (t) => {
  const started = Date.now()
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  const b = new Device(t, bootstrap, 'B')
  t.teardown(() => sh(`rm -rf ${a.dir}/src ${b.dir}/src`))
  await sh(`mkdir -p ${a.dir}/src ${b.dir}/src`)
  const src = (d, name) => path.join(d.dir, 'src', name)
  await a.mount(secret)

  const big = ['big/f0.bin', 'big/f1.bin', 'big/f2.bin', 'big/f3.bin']
  const files = {}
  for (const rel of big) files[rel] = { source: src(a, path.basename(rel)), size: 64 * MiB }
  files['pinned/p1.bin'] = { source: src(a, 'p1.bin'), size: 16 * MiB }
  files['small.bin'] = { source: src(a, 'small.bin'), size: 4 * MiB }
  let r = await writeFiles(a, files)
  t.is(r.code, 0, `A writes 4 x 64 MiB, a 16 MiB file to pin and a 4 MiB file ${r.stderr}`)

  await b.mount(secret, ['--cache-size', '64M'])
  await waitFor(async () => (await b.status()).bytesTotal === 276 * MiB, { timeout: 60000, message: 'B to see every file' })
  const disk0 = await du(b.dataDir)
  t.ok(disk0 < 16 * MiB, `B starts with ${mib(disk0)} in its data dir`)
  let cache = await cacheStatus(b)
  t.is(cache.limit, LIMIT, 'cache --json reports the 64 MiB limit')
  t.is(cache.keepAll, false, 'not keep-all')

  // Pins: fetched whole in the background, without a read.
  r = await b.cli(['pin', b.p('pinned')])
  t.is(r.code, 0, `tsyncfs pin ${b.p('pinned')} ${r.stderr}`)
  await waitFor(async () => {
    const c = await cacheStatus(b)
    return c.pins.bytesTotal === 16 * MiB && c.pins.bytesLocal === c.pins.bytesTotal
  }, { timeout: 60000, message: 'the pinned file to be fetched' })
  t.pass('the pinned directory is fetched whole without being read (pins.bytesLocal = bytesTotal = 16 MiB)')
  t.is((await localOf(b, 'pinned/p1.bin')).text, `${16 * MiB}/${16 * MiB} bytes (100.0%)`, 'getfattr says the pinned file is 100% local')
  cache = await cacheStatus(b)
  t.alike(cache.pins.paths, ['/pinned'], 'cache --json lists the pinned path')
  t.ok(cache.pinnedBytes >= 16 * MiB, `pinnedBytes counts the pinned file (${cache.pinnedBytes})`)

  // 1. Read 256 MiB through a 64 MiB cache, sampling the disk all along.
  const s1 = sampler(b)
  let f0AfterRead = null
  for (const rel of big) {
    const c = await cmp(b, rel, files[rel].source)
    t.ok(c.ok, `B reads ${rel} intact (${c.ms} ms) ${c.out}`)
    if (rel === big[0]) f0AfterRead = await localOf(b, rel)
  }
  await new Promise((resolve) => setTimeout(resolve, 3000)) // let the last eviction and compaction finish
  await s1.stop()
  t.ok(s1.samples >= 6, `${s1.samples} samples taken during the reads`)
  // While a compaction runs RocksDB briefly holds a second copy of what it relocates (at
  // most the cache itself; README, "The cache"): the momentary peak may reach that.
  t.ok(s1.maxDisk <= 2 * LIMIT + OVERHEAD, `B's data dir (du -sb) never exceeded 2 x limit + 48 MiB during the reads: max ${s1.maxText} (${s1.trace.join(' ')})`)
  t.ok(s1.maxLocal <= LIMIT + READ_AHEAD, `cache --json localBytes never exceeded limit + 8 MiB: max ${mib(s1.maxLocal)}`)
  cache = await cacheStatus(b)
  t.ok(cache.localBytes <= LIMIT, `after the reads, localBytes ${mib(cache.localBytes)} <= 64 MiB`)
  t.ok(cache.localBytes >= LIMIT / 2, `and the cache is used, not emptied (${mib(cache.localBytes)})`)
  t.is(cache.localBytes, cache.pinnedBytes + cache.evictableBytes, 'localBytes = pinnedBytes + evictableBytes')
  const disk1 = await du(b.dataDir)
  t.ok(disk1 <= LIMIT + OVERHEAD, `after the reads, B's data dir holds ${mib(disk1)} (du -sb)`)

  // Pinned blocks were not evicted by 256 MiB of reads.
  t.is((await localOf(b, 'pinned/p1.bin')).local, 16 * MiB, 'the pinned file is still 100% local after the reads')

  // 2. The first file was evicted by the others; it reads correctly again, from A.
  const f0Before = await localOf(b, big[0])
  t.ok(f0Before.local < f0Before.size, `after the other reads, ${big[0]} is not wholly local (${f0Before.text}; right after its read: ${f0AfterRead.text})`)
  t.ok(f0Before.local <= f0AfterRead.local, 'it lost blocks to eviction, it did not gain any')
  const missesBefore = cache.misses
  // The kernel may still hold the file's pages (auto_cache): drop them, so the re-read
  // reaches the daemon and its cache.
  await sh('echo 1 > /proc/sys/vm/drop_caches')
  const again = await cmp(b, big[0], files[big[0]].source)
  t.ok(again.ok, `B re-reads the evicted ${big[0]} intact (${again.ms} ms) ${again.out}`)
  cache = await cacheStatus(b)
  t.ok(cache.misses > missesBefore, `the re-read missed the cache (misses ${missesBefore} -> ${cache.misses}, hit rate ${cache.hitRate.toFixed(3)})`)
  t.ok(cache.localBytes <= LIMIT + READ_AHEAD, `and the cache is still bounded (${mib(cache.localBytes)})`)

  // 3. A new file written by A into the pinned directory is fetched without being read.
  files['pinned/p2.bin'] = { source: src(a, 'p2.bin'), size: 8 * MiB }
  r = await writeFiles(a, { 'pinned/p2.bin': files['pinned/p2.bin'] })
  t.is(r.code, 0, `A writes pinned/p2.bin ${r.stderr}`)
  await waitFor(async () => {
    const c = await cacheStatus(b)
    return c.pins.bytesTotal === 24 * MiB && c.pins.bytesLocal === c.pins.bytesTotal
  }, { timeout: 60000, message: 'the new file in the pinned directory to be fetched' })
  t.is((await localOf(b, 'pinned/p2.bin')).local, 8 * MiB, 'a new file in a pinned directory is fetched whole without a read')

  // A small file read last is wholly cached.
  const sm = await cmp(b, 'small.bin', files['small.bin'].source)
  t.ok(sm.ok, `B reads small.bin intact ${sm.out}`)
  await waitFor(async () => (await localOf(b, 'small.bin')).local === 4 * MiB, { timeout: 10000, message: 'small.bin to be wholly local' })
  await new Promise((resolve) => setTimeout(resolve, 2500)) // eviction settles; cache.json is saved
  const before = await cacheStatus(b)

  // After unmounting, the allocated size is bounded too (RocksDB no longer preallocates).
  await stop(b)
  const allocated = await du(b.dataDir, true)
  const apparent = await du(b.dataDir)
  t.ok(allocated <= LIMIT + OVERHEAD, `after unmounting B, its data dir allocates ${mib(allocated)} (du -sk; apparent ${mib(apparent)})`)

  // 5. The cache survives a restart; cached and pinned content reads with A gone.
  await stop(a)
  await b.mount(secret, ['--cache-size', '64M', '--read-timeout', '5'])
  t.is((await b.status()).peers.length, 0, 'B has no peer')
  const after = await cacheStatus(b)
  t.ok(Math.abs(after.localBytes - before.localBytes) <= 1 * MiB, `after a restart cache --json reports ${mib(after.localBytes)} local (before: ${mib(before.localBytes)})`)
  t.is(after.pinnedBytes, before.pinnedBytes, `pinnedBytes survive the restart (${mib(after.pinnedBytes)})`)
  t.alike(after.pins.paths, ['/pinned'], 'the pin survives the restart')
  t.is(after.pins.bytesLocal, 24 * MiB, 'the pinned files are still local')
  t.ok(after.misses >= before.misses && after.hits >= before.hits, `hits and misses survive (${after.hits}/${after.misses})`)
  for (const rel of ['pinned/p1.bin', 'pinned/p2.bin', 'small.bin']) {
    const c = await cmp(b, rel, files[rel].source, 60000)
    t.ok(c.ok, `with A gone, B reads ${rel} intact (${c.ms} ms) ${c.out}`)
    t.ok(c.ms < 5000, `from disk, well within the 5 s read timeout (${c.ms} ms)`)
  }

  // 4. This device's own content is never evicted: B writes 100 MiB of its own, then
  //    reads 128 MiB of A's content through the 64 MiB cache.
  await a.mount(secret)
  const own = { 'own/o0.bin': { source: src(b, 'o0.bin'), size: 50 * MiB }, 'own/o1.bin': { source: src(b, 'o1.bin'), size: 50 * MiB } }
  r = await writeFiles(b, own)
  t.is(r.code, 0, `B writes 100 MiB of its own files ${r.stderr}`)
  await waitFor(async () => (await b.status()).peers.length > 0, { timeout: 60000, message: 'B to reconnect to A' })
  const ownDisk = await du(b.dataDir)
  const s2 = sampler(b)
  for (const rel of [big[1], big[2]]) {
    const c = await cmp(b, rel, files[rel].source)
    t.ok(c.ok, `B reads ${rel} again, intact (${c.ms} ms) ${c.out}`)
  }
  await new Promise((resolve) => setTimeout(resolve, 3000))
  await s2.stop()
  const settled = await du(b.dataDir)
  t.ok(settled <= LIMIT + OVERHEAD + 100 * MiB, `with 100 MiB of its own, B's data dir settles under limit + 48 MiB + 100 MiB: ${mib(settled)} (after the writes: ${mib(ownDisk)})`)
  // Not asserted, a known limit: own content shares RocksDB with the cache, and each
  // eviction's compaction relocates the live blobs of the oldest blob files, own ones
  // included, so for a moment the data dir holds them twice.
  t.comment(`with own content, the data dir peaked at ${s2.maxText} during the reads (limit + 48 MiB + own = ${mib(LIMIT + OVERHEAD + 100 * MiB)}; ${s2.trace.join(' ')})`)
  t.ok(s2.maxLocal <= LIMIT + READ_AHEAD, `own content is not counted as cache: max localBytes ${mib(s2.maxLocal)}`)
  for (const rel of Object.keys(own)) {
    t.is((await localOf(b, rel)).text, `${50 * MiB}/${50 * MiB} bytes (100.0%)`, `getfattr says B's own ${rel} is 100% local after the reads`)
  }
  t.is((await cacheStatus(b)).pins.bytesLocal, 24 * MiB, 'the pinned files are still local after more reads')
  await stop(a)
  await waitFor(async () => (await b.status()).peers.length === 0, { timeout: 60000, message: 'B to lose A' })
  for (const rel of [...Object.keys(own), 'pinned/p1.bin', 'pinned/p2.bin']) {
    const c = await cmp(b, rel, (own[rel] || files[rel]).source, 60000)
    t.ok(c.ok, `with A gone, B reads ${rel} intact (${c.ms} ms) ${c.out}`)
  }
  t.comment(`runtime ${((Date.now() - started) / 1000).toFixed(1)} s; disk max ${mib(s1.maxDisk)} during 256 MiB of reads, ${mib(disk1)} after, ${mib(allocated)} allocated after unmount; with own content max ${mib(s2.maxDisk)}, settled ${mib(settled)}`)
})

test('this device\'s own files get read copies too, in room the cache leaves, and re-read intact from them', { timeout: 120000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  t.teardown(() => sh(`rm -f ${a.dir}/own.bin`))
  await a.mount(secret, ['--cache-size', '64M'])
  const size = 8 * MiB + 12345 // a short last block
  const r = await sh(`head -c ${size} /dev/urandom > ${a.dir}/own.bin && cp ${a.dir}/own.bin ${JSON.stringify(a.p('own.bin'))}`)
  t.is(r.code, 0, `A writes an 8 MiB file of its own ${r.stderr}`)
  // A new mount: the kernel keeps no page of the file, so the reads reach the daemon.
  await stop(a)
  await a.mount(secret, ['--cache-size', '64M'])
  t.is((await cacheStatus(a)).copyBytes, 0, 'no copies after a restart')
  const first = await cmp(a, 'own.bin', `${a.dir}/own.bin`)
  t.ok(first.ok, `A reads its own file from its log, intact ${first.out}`)
  const cache = await waitFor(async () => {
    const c = await cacheStatus(a)
    return c.copyBytes === size && c
  }, { timeout: 10000, message: 'copies of the whole file' })
  t.pass(`cache --json counts copies of the whole file (${cache.copyBytes} bytes)`)
  t.is(cache.localBytes, 0, 'its blocks are no cache: localBytes stays 0')
  t.is(cache.hits + cache.misses, 0, 'and its reads are no cache hits or misses')
  await sh('sync && echo 1 > /proc/sys/vm/drop_caches') // the next read reaches the daemon again
  const again = await cmp(a, 'own.bin', `${a.dir}/own.bin`)
  t.ok(again.ok, `the re-read, from the copies, is intact ${again.out}`)
})

test('bad cache input: a bad size, a limit below the pins, pins outside a mount or over the limit', { timeout: 400000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  const b = new Device(t, bootstrap, 'B')
  await a.mount(secret)

  for (const args of [['mount', secret, b.mnt, '--data-dir', b.dataDir, '--cache-size', 'abc'], [secret, b.mnt, '-o', `data_dir=${b.dataDir},cache_size=abc`]]) {
    const res = await b.cli(args)
    const lines = res.stderr.trim().split('\n')
    t.is(res.code, 2, `${args.includes('-o') ? '-o cache_size=abc' : '--cache-size abc'}: exit 2`)
    t.is(lines.length, 1, `one line on stderr (${res.stderr.trim()})`)
    t.ok(/cache.size/.test(lines[0]) && /abc/.test(lines[0]), 'it names the bad size')
    t.is(b.pid(), null, 'no daemon runs')
  }

  const r = await a.sh('mkdir a c && head -c 6291456 /dev/urandom > a/x.bin && head -c 12582912 /dev/urandom > c/y.bin && head -c 20971520 /dev/urandom > big.bin')
  t.is(r.code, 0, `A writes 6, 12 and 20 MiB files ${r.stderr}`)
  await b.mount(secret, ['--cache-size', '16M'])
  await waitFor(async () => (await b.status()).bytesTotal === 38 * MiB, { timeout: 60000, message: 'B to see every file' })

  let res = await b.cli(['pin', b.p('big.bin')])
  t.not(res.code, 0, 'pinning 20 MiB with a 16 MiB limit fails')
  t.ok(/limit/.test(res.stderr) && res.stderr.trim().split('\n').length === 1, `with one clear line (${res.stderr.trim()})`)
  t.alike((await cacheStatus(b)).pins.paths, [], 'nothing is pinned')

  res = await b.cli(['pin', b.p('a')])
  t.is(res.code, 0, `pinning 6 MiB works ${res.stderr}`)
  await waitFor(async () => {
    const c = await cacheStatus(b)
    return c.pins.bytesTotal === 6 * MiB && c.pins.bytesLocal === 6 * MiB
  }, { timeout: 60000, message: 'a/ to be fetched' })
  res = await b.cli(['pin', b.p('c')])
  t.not(res.code, 0, 'pinning 12 MiB more (18 MiB in all) with a 16 MiB limit fails')
  t.ok(/limit/.test(res.stderr), `clearly (${res.stderr.trim()})`)
  t.alike((await cacheStatus(b)).pins.paths, ['/a'], 'only /a is pinned')

  res = await b.cli(['pin', '/tmp'])
  t.not(res.code, 0, 'tsyncfs pin /tmp fails')
  t.is(res.stderr.trim(), 'tsyncfs: /tmp is not inside a tsyncfs mount', 'saying /tmp is not inside a mount')
  res = await b.cli(['unpin', '/tmp'])
  t.not(res.code, 0, 'tsyncfs unpin /tmp fails')
  res = await b.cli(['pin', b.p('no-such-file')])
  t.not(res.code, 0, `pinning a path that does not exist fails (${res.stderr.trim()})`)
  res = await b.cli(['unpin', b.p('c')])
  t.not(res.code, 0, `unpinning a path that is not pinned fails (${res.stderr.trim()})`)

  // Remounting with a limit below what is pinned is refused, and changes nothing.
  await stop(b)
  res = await b.cli(['mount', secret, b.mnt, '--data-dir', b.dataDir, '--cache-size', '4M'])
  t.not(res.code, 0, 'mounting with --cache-size 4M below 6 MiB pinned fails')
  t.ok(/pinned/.test(res.stderr) && res.stderr.trim().split('\n').length === 1, `with one clear line (${res.stderr.trim()})`)
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8')
  t.absent(info.split('\n').some((l) => l.split(' ')[4] === b.mnt), 'nothing is mounted')
  t.is(b.pid(), null, 'no daemon is registered')
  await b.mount(secret, ['--cache-size', '16M'])
  const c = await cacheStatus(b)
  t.alike(c.pins.paths, ['/a'], 'the pins are unchanged')
  t.is(c.pins.bytesLocal, 6 * MiB, 'and still local')

  res = await b.cli(['unpin', b.p('a')])
  t.is(res.code, 0, `unpin works ${res.stderr}`)
  t.alike((await cacheStatus(b)).pins.paths, [], 'nothing is pinned any more')
})

test('--keep-all fetches every file whole without reads, including new ones', { timeout: 400000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  const c = new Device(t, bootstrap, 'C')
  await a.mount(secret)
  const src = path.join(a.dir, 'src')
  let r = await sh(`mkdir -p ${src}/d1 ${src}/d2/sub && head -c 3145728 /dev/urandom > ${src}/d1/f1 && head -c 5242941 /dev/urandom > ${src}/d2/sub/f2 && head -c 1000 /dev/urandom > ${src}/f3 && : > ${src}/empty && cp -r ${src}/. ${a.mnt}/`)
  t.is(r.code, 0, `A writes a tree ${r.stderr}`)
  const total = 3145728 + 5242941 + 1000
  await c.mount(secret, ['--keep-all'])
  let status
  await waitFor(async () => {
    status = await c.status()
    return status.bytesTotal === total && status.bytesLocal === total
  }, { timeout: 60000, message: `C to hold every byte (last: ${status && status.bytesLocal}/${status && status.bytesTotal})` })
  t.pass(`C holds every file whole without reading it (bytesLocal ${status.bytesLocal} = bytesTotal)`)
  t.alike(status.partial, [], 'no file is partial')
  const cache = await cacheStatus(c)
  t.is(cache.keepAll, true, 'cache --json says keepAll')
  t.is(cache.limit, null, 'with no limit')

  r = await sh(`head -c 4194304 /dev/urandom > ${src}/d1/late && cp ${src}/d1/late ${a.mnt}/d1/late`)
  t.is(r.code, 0, `A writes a new file later ${r.stderr}`)
  await waitFor(async () => {
    status = await c.status()
    return status.bytesTotal === total + 4194304 && status.bytesLocal === status.bytesTotal
  }, { timeout: 60000, message: 'C to fetch the new file' })
  t.pass('a file written later is fetched whole too')

  await stop(a)
  r = await sh(`diff -r ${src} ${c.mnt}`, { timeout: 60000 })
  t.is(r.code, 0, `with A gone, C's tree equals A's ${r.stdout}${r.stderr}`)
})

test('warm re-reads come from the read copies on FUSE\'s threads: the right bytes at any offset, counted as hits; once evicted, the same open file reads from the peer again', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const secret = await newSecret()
  const a = new Device(t, bootstrap, 'A')
  const b = new Device(t, bootstrap, 'B')
  t.teardown(() => sh(`rm -rf ${a.dir}/src`))
  await sh(`mkdir -p ${a.dir}/src`)
  await a.mount(secret)
  const size = 8 * MiB + 12345 // a last block that is not whole
  const files = {
    'warm.bin': { source: path.join(a.dir, 'src', 'warm.bin'), size },
    'other.bin': { source: path.join(a.dir, 'src', 'other.bin'), size: 48 * MiB }
  }
  let r = await writeFiles(a, files)
  t.is(r.code, 0, `A writes an 8 MiB file and a 48 MiB one ${r.stderr}`)
  await b.mount(secret, ['--cache-size', '32M'])
  await waitFor(async () => (await b.status()).bytesTotal === size + 48 * MiB, { timeout: 60000, message: 'B to see both files' })

  // Every block read gets its copy, also one whose download event came after the read.
  const c0 = await cmp(b, 'warm.bin', files['warm.bin'].source)
  t.ok(c0.ok, `B reads warm.bin once, from A ${c0.out}`)
  await waitFor(async () => (await cacheStatus(b)).copyBytes >= size, { timeout: 10000, message: 'read copies of the whole file' })
  const before = await cacheStatus(b)

  // The kernel's page cache is dropped, so that the reads reach the file system.
  const source = await fs.readFile(files['warm.bin'].source)
  const fh = await fs.open(b.p('warm.bin'), 'r')
  t.teardown(() => fh.close().catch(() => {}))
  const readsRight = async (what) => {
    await sh('sync && echo 1 > /proc/sys/vm/drop_caches')
    const ranges = [[0, size], [12345, 300000], [BLOCK - 100, 200], [size - 5000, 10000], [size + 10, 100]]
    for (const [position, length] of ranges) {
      const buf = Buffer.alloc(length)
      const { bytesRead } = await fh.read(buf, 0, length, position)
      const want = source.subarray(position, position + length)
      if (!buf.subarray(0, bytesRead).equals(want)) return t.fail(`${what}: ${length} bytes at ${position} differ (${bytesRead} read, ${want.length} expected)`)
    }
    t.pass(`${what}: whole, unaligned, across a block boundary, up to the end and past it`)
  }
  await readsRight('re-reads on B give the right bytes')
  const blocks = Math.ceil(size / BLOCK)
  let after = before
  await waitFor(async () => (after = await cacheStatus(b)).directHits >= before.directHits + blocks, { timeout: 10000, message: 'the direct reads to be counted' }).catch(() => {})
  t.ok(after.directHits - before.directHits >= blocks, `the re-reads were answered outside the event loop and counted as hits of all ${blocks} blocks (${before.directHits} -> ${after.directHits} direct hits)`)
  t.is(after.misses, before.misses, 'and none of them missed')

  // Reading 48 MiB through a 32 MiB cache evicts warm.bin's blocks and their copies, while
  // warm.bin stays open: its next reads must not trust a copy that is gone.
  const c1 = await cmp(b, 'other.bin', files['other.bin'].source)
  t.ok(c1.ok, `B reads other.bin intact ${c1.out}`)
  await waitFor(async () => (await localOf(b, 'warm.bin')).local < size, { timeout: 30000, message: 'warm.bin to be evicted' })
  t.pass(`warm.bin is evicted (${(await localOf(b, 'warm.bin')).text})`)
  await readsRight('the handle opened before the eviction still reads the right bytes')
  t.ok((await cacheStatus(b)).misses > after.misses, 'those reads went to A again (misses grew)')
})
