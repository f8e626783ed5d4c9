// Version vectors, Syncthing-style: one counter per device that changed a path.
export type VersionVector = Record<string, number>
export type Order = 'equal' | 'before' | 'after' | 'concurrent'

export function compare(a: VersionVector, b: VersionVector): Order {
  let aAhead = false
  let bAhead = false
  for (const device of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[device] ?? 0
    const y = b[device] ?? 0
    if (x > y) aAhead = true
    else if (y > x) bAhead = true
  }
  if (aAhead && bAhead) return 'concurrent'
  if (aAhead) return 'after'
  if (bAhead) return 'before'
  return 'equal'
}

export function join(vectors: VersionVector[]): VersionVector {
  const out: VersionVector = {}
  for (const v of vectors) {
    for (const [device, n] of Object.entries(v)) out[device] = Math.max(out[device] ?? 0, n)
  }
  return out
}

export function bump(base: VersionVector, device: string): VersionVector {
  return { ...base, [device]: (base[device] ?? 0) + 1 }
}
