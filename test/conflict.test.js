'use strict'
// Devices that were apart (each changed the folder alone, offline) merge when they
// meet again: concurrent edits both survive (one at the name, one as a conflict copy),
// an edit beats a concurrent delete, identical changes are no conflict, and conflict
// copies are real files that stay until someone deletes them.
const test = require('brittle')
const fs = require('fs').promises
const path = require('path')
const { startTestnet, Device, newSecret, waitFor, folderWith } = require('./helpers')

const CONFLICT = /\.sync-conflict-(\d{8})-(\d{6})-([A-Z2-7]{7})(\.[^./]*)?$/

/** Every path below the mount: 'dir/', 'link -> target', or the file's content. */
async function tree (d) {
  const out = {}
  const walk = async (rel) => {
    const entries = await fs.readdir(rel ? d.p(rel) : d.mnt, { withFileTypes: true })
    for (const e of entries) {
      const p = rel ? rel + '/' + e.name : e.name
      if (e.isDirectory()) {
        out[p + '/'] = 'dir'
        await walk(p)
      } else if (e.isSymbolicLink()) {
        out[p] = '-> ' + await fs.readlink(d.p(p))
      } else {
        out[p] = (await fs.readFile(d.p(p))).toString()
      }
    }
  }
  await walk('')
  return sortKeys(out)
}

function sortKeys (obj) {
  return Object.fromEntries(Object.entries(obj).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

const same = (x, y) => JSON.stringify(x) === JSON.stringify(y)

/** Waits until every device shows the same tree and `accept(tree)` holds; returns the tree. */
async function converge (devices, accept = () => true, timeout = 90000) {
  let all = []
  try {
    await waitFor(async () => {
      all = await Promise.all(devices.map(tree))
      return all.every((x) => same(x, all[0])) && accept(all[0])
    }, { timeout, interval: 250, message: 'devices to converge' })
  } catch (err) {
    console.log(all.map((x, i) => `--- ${devices[i].name}\n${JSON.stringify(x, null, 2)}`).join('\n'))
    throw err
  }
  return all[0]
}

/** The expected conflict copy name of `rel` for a loser with this mtime and device. */
function expectedConflictName (rel, mtimeMs, device) {
  const iso = new Date(mtimeMs).toISOString()
  const stamp = iso.slice(0, 10).replace(/-/g, '') + '-' + iso.slice(11, 19).replace(/:/g, '')
  const dot = rel.lastIndexOf('.')
  const short = device.slice(0, 7).toUpperCase()
  return dot > 0 ? `${rel.slice(0, dot)}.sync-conflict-${stamp}-${short}${rel.slice(dot)}` : `${rel}.sync-conflict-${stamp}-${short}`
}

const conflictCopies = (t) => Object.keys(t).filter((p) => CONFLICT.test(p))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Two devices on one folder that have synced `setup` (run on A) and know each other. */
async function pair (t) {
  const { bootstrap, secret, devices: [a, b] } = await folderWith(t, ['A', 'B'])
  const ids = { a: (await a.status()).device, b: (await b.status()).device }
  t.ok(ids.a && ids.b && ids.a !== ids.b, 'both devices are writers with their own ids')
  return { bootstrap, secret, a, b, ids }
}

/** Runs `onA` on A while B is away, then `onB` on B while A is away, then brings A back.
 *  Both mounts are up when this returns. */
async function apart ({ secret, a, b }, onA, onB) {
  await b.unmount()
  await onA()
  await a.unmount()
  await b.mount(secret)
  // B is alone: nobody else is running.
  const st = await b.status()
  if (st.peers.length !== 0) throw new Error('B is supposed to be alone, has peers ' + JSON.stringify(st.peers))
  await onB()
  await a.mount(secret)
}

test('concurrent edits on devices that were apart: both versions survive, on every device', { timeout: 300000 }, async (t) => {
  const ctx = await pair(t)
  const { a, b, ids, secret, bootstrap } = ctx
  await fs.mkdir(a.p('docs'))
  await fs.writeFile(a.p('docs/notes.txt'), 'base version\n')
  await b.waitForContent('docs/notes.txt', 'base version\n', 60000)

  let mtimeA
  await apart(ctx, async () => {
    await fs.writeFile(a.p('docs/notes.txt'), 'edited on A\n')
    mtimeA = (await fs.stat(a.p('docs/notes.txt'))).mtimeMs
  }, async () => {
    // B's edit is later, so B wins by the newer mtime and A's version is the conflict copy.
    await sleep(1100)
    await fs.writeFile(b.p('docs/notes.txt'), 'edited on B, later\n')
    t.alike(await fs.readdir(b.p('docs')), ['notes.txt'], 'alone, B only sees its own version')
  })

  const expectedCopy = 'docs/' + expectedConflictName('notes.txt', mtimeA, ids.a)
  const final = await converge([a, b], (x) => conflictCopies(x).length > 0)
  t.alike(Object.keys(final), ['docs/', 'docs/notes.txt', expectedCopy].sort(), 'the winner and one conflict copy, same names on both devices')
  const copy = conflictCopies(final)[0]
  const m = path.basename(copy).match(/^notes\.sync-conflict-(\d{8})-(\d{6})-([A-Z2-7]{7})\.txt$/)
  t.ok(m, `conflict copy name ${copy} is notes.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.txt`)
  t.is(m && m[3], ids.a.slice(0, 7).toUpperCase(), 'the copy is named after the losing device (A)')
  t.is(final['docs/notes.txt'], 'edited on B, later\n', 'the newer edit (B) keeps the name')
  t.is(final[copy], 'edited on A\n', 'the older edit (A) is the conflict copy')
  for (const d of [a, b]) {
    t.is((await fs.stat(d.p(copy))).mtimeMs, mtimeA, `${d.name}: the conflict copy keeps the mtime of A's version`)
  }

  // Nothing flips back and forth once settled.
  await sleep(2000)
  t.alike(await tree(a), final, 'A is stable')
  t.alike(await tree(b), final, 'B is stable')

  // A device joining later sees the same.
  const c = new Device(t, bootstrap, 'C')
  await c.mount(secret)
  const withC = await converge([a, b, c], (x) => conflictCopies(x).length > 0)
  t.alike(withC, final, 'a third device sees the same names and contents')
})

test('delete on one device and edit on the other while apart: the edit is kept', { timeout: 300000 }, async (t) => {
  const ctx = await pair(t)
  const { a, b } = ctx
  await fs.writeFile(a.p('first.txt'), 'first original\n')
  await fs.writeFile(a.p('second.txt'), 'second original\n')
  await fs.writeFile(a.p('untouched.txt'), 'untouched\n')
  await b.waitForContent('first.txt', 'first original\n', 60000)
  await b.waitForContent('second.txt', 'second original\n')
  await b.waitForContent('untouched.txt', 'untouched\n')

  await apart(ctx, async () => {
    await fs.unlink(a.p('first.txt')) // deleted on A first, edited on B later
    await fs.writeFile(a.p('second.txt'), 'second edited on A\n') // edited on A, deleted on B later
  }, async () => {
    await sleep(1100)
    t.is((await fs.readFile(b.p('first.txt'))).toString(), 'first original\n', 'alone, B still has the file A deleted')
    await fs.writeFile(b.p('first.txt'), 'first edited on B\n')
    await fs.unlink(b.p('second.txt'))
  })

  const expected = { 'first.txt': 'first edited on B\n', 'second.txt': 'second edited on A\n', 'untouched.txt': 'untouched\n' }
  // Wait for A to have B's edit and B to have A's edit (and no conflict copies).
  const final = await converge([a, b], (x) => same(x, expected))
  t.alike(final, expected, 'both edits are kept over the deletes, no conflict copy, on both devices')
  await sleep(2000)
  t.alike(await tree(a), expected, 'A is stable')
  t.alike(await tree(b), expected, 'B is stable')
  t.is((await a.status()).conflicts, 0, 'A reports no conflicts')
  t.is((await b.status()).conflicts, 0, 'B reports no conflicts')
})

test('the same new file created on both devices while apart is no conflict', { timeout: 300000 }, async (t) => {
  const ctx = await pair(t)
  const { a, b } = ctx
  await fs.writeFile(a.p('seen.txt'), 'synced before\n')
  await b.waitForContent('seen.txt', 'synced before\n', 60000)

  const make = async (d) => {
    await fs.mkdir(d.p('made twice'))
    await fs.writeFile(d.p('made twice/same.txt'), 'identical bytes\n')
    await fs.writeFile(d.p('same top.md'), 'identical too\n')
    await fs.symlink('same top.md', d.p('same link'))
  }
  await apart(ctx, () => make(a), async () => { await sleep(1100); await make(b) })

  // Wait a while past the moment they see each other, so a late conflict copy would show.
  await waitFor(async () => (await a.status()).peers.length > 0 && (await b.status()).peers.length > 0, { timeout: 60000, message: 'A and B to reconnect' })
  const expected = {
    'made twice/': 'dir',
    'made twice/same.txt': 'identical bytes\n',
    'same link': '-> same top.md',
    'same top.md': 'identical too\n',
    'seen.txt': 'synced before\n'
  }
  const final = await converge([a, b], (x) => same(x, expected))
  t.alike(final, expected, 'one copy of each, no conflict copies')
  await sleep(3000)
  t.alike(await tree(a), expected, 'A still has no conflict copy')
  t.alike(await tree(b), expected, 'B still has no conflict copy')
})

test('conflict copies are real files: kept through later edits, deletable on any device', { timeout: 300000 }, async (t) => {
  const ctx = await pair(t)
  const { a, b } = ctx
  await fs.writeFile(a.p('report'), 'v0')
  await b.waitForContent('report', 'v0', 60000)
  await apart(ctx, async () => {
    await fs.writeFile(a.p('report'), 'v1 from A')
  }, async () => {
    await sleep(1100)
    await fs.writeFile(b.p('report'), 'v1 from B')
  })
  const merged = await converge([a, b], (x) => conflictCopies(x).length === 1)
  const copy = conflictCopies(merged)[0]
  t.ok(/^report\.sync-conflict-\d{8}-\d{6}-[A-Z2-7]{7}$/.test(copy), `a name without extension gets no dot at the end: ${copy}`)
  t.is(merged.report, 'v1 from B', 'the newer edit keeps the name')
  t.is(merged[copy], 'v1 from A', 'the older edit is the conflict copy')

  // Editing the winner again, on either device, leaves the conflict copy alone.
  await fs.writeFile(a.p('report'), 'v2 from A, after the merge')
  await b.waitForContent('report', 'v2 from A, after the merge', 60000)
  await fs.appendFile(b.p('report'), ' + B')
  await a.waitForContent('report', 'v2 from A, after the merge + B', 60000)
  await sleep(2000)
  const afterEdit = { report: 'v2 from A, after the merge + B', [copy]: 'v1 from A' }
  t.alike(await tree(a), afterEdit, 'A: the edit shows and the conflict copy is still there')
  t.alike(await tree(b), afterEdit, 'B: the edit shows and the conflict copy is still there')

  // Deleting the conflict copy on B removes it on A, for good.
  await fs.unlink(b.p(copy))
  await a.waitForMissing(copy, 60000)
  await sleep(2000)
  const afterDelete = { report: 'v2 from A, after the merge + B' }
  t.alike(await tree(a), afterDelete, 'A: the conflict copy is gone, the file stays')
  t.alike(await tree(b), afterDelete, 'B: the conflict copy is gone, the file stays')
  t.is((await a.status()).conflicts, 0, 'no unsettled conflicts on A')
})
