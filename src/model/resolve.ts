// The merge rules: which of the devices' entries for one path is the state of that
// path, and which concurrent versions survive as conflict copies.
import { Entry, contentIdentity } from './entry'
import { compare, join, VersionVector } from './version-vector'

export interface Resolution {
  winner: Entry | null // null: the path does not exist (never made, or deleted)
  conflicts: Entry[] // losing concurrent versions, each kept under a conflict name
  frontier: VersionVector // join of every maximal version: what a new write must dominate
}

/** Deterministic order among concurrent live versions: directories first (children need
 *  them), then the newer mtime, then the larger device id. */
function beats(a: Entry, b: Entry): boolean {
  if ((a.type === 'dir') !== (b.type === 'dir')) return a.type === 'dir'
  if (a.mtime !== b.mtime) return a.mtime > b.mtime
  return a.device > b.device
}

export function maximal(candidates: Entry[]): Entry[] {
  const out: Entry[] = []
  for (const c of candidates) {
    let keep = true
    for (const d of candidates) {
      if (d === c) continue
      const order = compare(c.vv, d.vv)
      if (order === 'before' || (order === 'equal' && beats(d, c))) { keep = false; break }
    }
    if (keep) out.push(c)
  }
  return out
}

export function resolve(candidates: Entry[]): Resolution {
  const top = maximal(candidates)
  const frontier = join(top.map((e) => e.vv))
  // A delete concurrent with an edit loses: the edit is kept (nothing silently lost).
  const live = top.filter((e) => !e.deleted)
  if (live.length === 0) return { winner: null, conflicts: [], frontier }
  let winner = live[0]
  for (const e of live) if (beats(e, winner)) winner = e
  const seen = new Set([contentIdentity(winner)])
  const conflicts: Entry[] = []
  for (const e of live) {
    const id = contentIdentity(e)
    if (seen.has(id)) continue
    seen.add(id)
    conflicts.push(e)
  }
  return { winner, conflicts, frontier }
}

/** `dir/name.sync-conflict-YYYYMMDD-HHMMSS-<device>.ext`, from the losing version itself
 *  so every device derives the same name without talking. */
export function conflictName(path: string, loser: Entry): string {
  const slash = path.lastIndexOf('/')
  const dir = path.slice(0, slash + 1)
  const base = path.slice(slash + 1)
  const dot = base.lastIndexOf('.')
  const hasExt = dot > 0 && loser.type === 'file'
  const stem = hasExt ? base.slice(0, dot) : base
  const ext = hasExt ? base.slice(dot) : ''
  const t = new Date(loser.mtime).toISOString() // UTC: the same on every device
  const stamp = t.slice(0, 10).replace(/-/g, '') + '-' + t.slice(11, 19).replace(/:/g, '')
  return `${dir}${stem}.sync-conflict-${stamp}-${shortDevice(loser.device)}${ext}`
}

export function shortDevice(device: string): string {
  return device.slice(0, 7).toUpperCase()
}
