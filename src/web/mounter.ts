// Mounting from the web UI runs the real `tsyncfs mount`, so every check it makes and
// every message it prints is the same as on the command line.
import { execFile } from 'child_process'
import { promises as fs } from 'fs'
import path from 'path'
import { randomBytes } from 'crypto'
import { newReadWriteSecret, parseSecret, SecretError } from '../secrets'
import { runtimeDir } from '../daemon/paths'

export class FormError extends Error {}

export interface MountRequest { secret?: string; create?: boolean; mountpoint?: string }
export interface MountOptions { bin: string; dataDir: string | null }

/** Mounts a new folder (create) or an existing one (secret) at an absolute mountpoint. */
export async function mountFolder(req: MountRequest, opts: MountOptions): Promise<{ folderId: string; mountpoint: string }> {
  const secret = req.create ? newReadWriteSecret() : checkSecret(req.secret)
  const mountpoint = checkMountpoint(req.mountpoint)
  const created = await createMissingDir(mountpoint)
  // The secret goes through a private file, never onto a command line (ps shows those).
  const secretFile = path.join(runtimeDir(), `web-secret-${randomBytes(8).toString('hex')}`)
  await fs.mkdir(runtimeDir(), { recursive: true, mode: 0o700 })
  await fs.writeFile(secretFile, secret + '\n', { mode: 0o600 })
  try {
    const args = ['mount', secretFile, mountpoint, ...(opts.dataDir ? ['--data-dir', opts.dataDir] : [])]
    const res = await run(process.execPath, [opts.bin, ...args])
    if (res.code !== 0) {
      if (created) await fs.rmdir(mountpoint).catch(() => {}) // bad input changes nothing
      throw new FormError(res.stderr.trim().replace(/^tsyncfs: /, '') || `mount failed (exit ${res.code})`)
    }
  } finally {
    await fs.rm(secretFile, { force: true })
  }
  return { folderId: parseSecret(secret).folderId, mountpoint }
}

function checkSecret(secret: string | undefined): string {
  const text = (secret ?? '').trim()
  if (!text) throw new FormError('paste a secret (tsrw-..., tsro-...) or create a new folder')
  try {
    parseSecret(text)
  } catch (err) {
    if (err instanceof SecretError) throw new FormError(err.message)
    throw err
  }
  return text
}

function checkMountpoint(mountpoint: string | undefined): string {
  const text = (mountpoint ?? '').trim()
  if (!text) throw new FormError('choose a mountpoint (an absolute path of an empty directory)')
  if (!path.isAbsolute(text)) throw new FormError(`the mountpoint must be an absolute path, not "${text}"`)
  return path.resolve(text)
}

/** Creates the mountpoint if only it is missing (its parent exists); true if it did. */
async function createMissingDir(mountpoint: string): Promise<boolean> {
  try {
    await fs.mkdir(mountpoint, { mode: 0o755 })
    return true
  } catch {
    return false // exists, or its parent does not: mount says which
  }
}

function run(file: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 120000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stderr: String(stderr) })
    })
  })
}
