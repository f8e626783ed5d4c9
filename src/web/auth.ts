// Who may use the web UI: sessions (a cookie), CSRF tokens, an optional password kept
// only as a scrypt hash, a rate limit on wrong passwords, and Host/Origin checks
// against DNS rebinding.
import { randomBytes, scrypt as scryptCb, timingSafeEqual } from 'crypto'
import { promisify } from 'util'
import type { IncomingMessage } from 'http'

const scrypt = promisify(scryptCb) as (password: string, salt: Buffer, keylen: number, opts: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>

export const SESSION_COOKIE = 'tsyncfs_session'
const SESSION_TTL_MS = 12 * 3600 * 1000
const MAX_SESSIONS = 1000

// --- password hashes: "scrypt$N$r$p$salt-b64$hash-b64" ---

const SCRYPT = { N: 16384, r: 8, p: 1, keylen: 32 }

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16)
  const hash = await scrypt(password, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, maxmem: 64 * 1024 * 1024 })
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), hash.toString('base64')].join('$')
}

export function isPasswordHash(text: string): boolean {
  return /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/.test(text)
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [, n, r, p, salt, hash] = stored.split('$')
  const want = Buffer.from(hash, 'base64')
  const got = await scrypt(password, Buffer.from(salt, 'base64'), want.length, { N: Number(n), r: Number(r), p: Number(p), maxmem: 64 * 1024 * 1024 })
  return got.length === want.length && timingSafeEqual(got, want)
}

// --- sessions ---

interface Session { csrf: string; authenticated: boolean; expires: number }

export class Sessions {
  private readonly sessions = new Map<string, Session>()

  /** `passwordHash` null: every new session is authenticated (loopback without a password). */
  constructor(private readonly passwordHash: string | null) {}

  get passwordRequired(): boolean {
    return this.passwordHash !== null
  }

  /** The session of a request's cookie, if it is known and current. */
  find(req: IncomingMessage): (Session & { id: string }) | null {
    const id = cookieOf(req, SESSION_COOKIE)
    const session = id ? this.sessions.get(id) : undefined
    if (!id || !session) return null
    if (session.expires < Date.now()) {
      this.sessions.delete(id)
      return null
    }
    return { ...session, id }
  }

  create(): { id: string; csrf: string } {
    if (this.sessions.size >= MAX_SESSIONS) this.dropOldest()
    const id = randomBytes(32).toString('base64url')
    const csrf = randomBytes(32).toString('base64url')
    this.sessions.set(id, { csrf, authenticated: !this.passwordRequired, expires: Date.now() + SESSION_TTL_MS })
    return { id, csrf }
  }

  /** Checks a password; on success the session becomes authenticated under a new id
   *  (so a session id seen before login is worth nothing after it). */
  async login(oldId: string, password: string): Promise<{ id: string; csrf: string } | null> {
    if (!this.passwordHash || !(await verifyPassword(password, this.passwordHash))) return null
    this.sessions.delete(oldId)
    const fresh = this.create()
    this.sessions.get(fresh.id)!.authenticated = true
    return fresh
  }

  private dropOldest(): void {
    const oldest = this.sessions.keys().next().value
    if (oldest !== undefined) this.sessions.delete(oldest)
  }
}

export function sessionCookie(id: string): string {
  return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${SESSION_TTL_MS / 1000}`
}

function cookieOf(req: IncomingMessage, name: string): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=')
    if (k === name) return v.join('=')
  }
  return null
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

// --- wrong passwords ---

/** After a few wrong passwords from one address, further attempts wait: 5 free tries,
 *  then the wait doubles from 2 s up to 5 min. A right password resets the count. */
export class LoginLimiter {
  private readonly failures = new Map<string, { count: number; until: number }>()

  retryAfterMs(address: string): number {
    const f = this.failures.get(address)
    return f ? Math.max(0, f.until - Date.now()) : 0
  }

  failed(address: string): void {
    const f = this.failures.get(address) ?? { count: 0, until: 0 }
    f.count++
    if (f.count >= 5) f.until = Date.now() + Math.min(300000, 2000 * 2 ** (f.count - 5))
    this.failures.set(address, f)
  }

  succeeded(address: string): void {
    this.failures.delete(address)
  }
}

// --- DNS rebinding ---

/** A page from another site that resolves its own name to 127.0.0.1 reaches us with its
 *  own name in Host: on loopback, only loopback names are answered. Listening elsewhere
 *  is password-protected, and the session cookie is bound to the name the user used. */
export function hostAllowed(host: string | undefined, loopbackOnly: boolean, port: number): boolean {
  if (!host) return false
  if (!loopbackOnly) return true
  const allowed = ['127.0.0.1', 'localhost', '[::1]'].map((h) => `${h}:${port}`)
  return allowed.includes(host.toLowerCase()) || (port === 80 && ['127.0.0.1', 'localhost', '[::1]'].includes(host.toLowerCase()))
}

/** A browser sends Origin on cross-site and state-changing requests: it must be us. */
export function originAllowed(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true // not a browser, or a same-origin GET
  return origin === `http://${host}`
}
