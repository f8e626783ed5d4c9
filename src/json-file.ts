// Small state files (members, pins, cache bookkeeping) are JSON replaced whole.
import { promises as fs } from 'fs'

const saving = new Map<string, Promise<void>>()

/** Replaces `file` with `value` as JSON: written to a temporary file and renamed, so a
 *  reader never sees half of it, and saves of one file run in call order, so the last
 *  one wins (two saves at once had left a torn members.json). */
export function saveJson(file: string, value: unknown): Promise<void> {
  const text = JSON.stringify(value)
  const save = (saving.get(file) ?? Promise.resolve()).catch(() => {}).then(async () => {
    const tmp = file + '.tmp'
    await fs.writeFile(tmp, text, { mode: 0o600 })
    await fs.rename(tmp, file)
  })
  saving.set(file, save)
  const forget = (): void => { if (saving.get(file) === save) saving.delete(file) }
  save.then(forget, forget)
  return save
}
