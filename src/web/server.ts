// The web UI's HTTP server: static assets, the session that the page load creates, and
// the JSON API behind session, CSRF, Host and Origin checks. Node's http module only.
import http, { IncomingMessage, ServerResponse } from 'http'
import { promises as fs } from 'fs'
import path from 'path'
import { Api, ApiRequest, HttpError } from './api'
import { hostAllowed, LoginLimiter, originAllowed, safeEqual, sessionCookie, Sessions } from './auth'
import { MountOptions } from './mounter'

export interface WebOptions extends MountOptions {
  host: string
  port: number
  passwordHash: string | null
}

const STATIC_DIR = path.join(__dirname, 'static')
const MAX_BODY = 64 * 1024
const ASSETS: Record<string, { file: string; type: string }> = {
  '/static/app.js': { file: path.join(STATIC_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/static/app.css': { file: path.join(STATIC_DIR, 'app.css'), type: 'text/css; charset=utf-8' },
  '/static/qrcode.js': { file: require.resolve('qrcode-generator'), type: 'text/javascript; charset=utf-8' }
}
const SECURITY_HEADERS = {
  // Nothing from elsewhere, no inline script: an injected string cannot run.
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY'
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

export class WebServer {
  private readonly sessions: Sessions
  private readonly limiter = new LoginLimiter()
  private readonly api: Api
  private readonly server: http.Server
  private port = 0

  constructor(private readonly opts: WebOptions) {
    this.sessions = new Sessions(opts.passwordHash)
    this.api = new Api(opts)
    this.server = http.createServer((req, res) => {
      this.serve(req, res).catch((err: Error) => sendJson(res, 500, { error: err.message }))
    })
  }

  /** Listens; resolves the address actually bound (port 0 picks a free one). */
  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.opts.port, this.opts.host, () => {
        const addr = this.server.address()
        this.port = typeof addr === 'object' && addr ? addr.port : this.opts.port
        resolve({ host: this.opts.host, port: this.port })
      })
    })
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v)
    if (!hostAllowed(req.headers.host, isLoopback(this.opts.host), this.port)) {
      return sendJson(res, 403, { error: 'unexpected Host header (open the UI as http://127.0.0.1:PORT or http://localhost:PORT)' })
    }
    const url = new URL(req.url ?? '/', 'http://x')
    if (req.method === 'GET' && url.pathname === '/') return this.page(req, res)
    if (req.method === 'GET' && ASSETS[url.pathname]) return sendFile(res, ASSETS[url.pathname])
    if (url.pathname === '/api/session' && req.method === 'GET') return this.sessionInfo(req, res)
    if (url.pathname.startsWith('/api/')) return this.apiRequest(req, res, url)
    sendJson(res, 404, { error: 'not found' })
  }

  /** The page load starts a session; its CSRF token goes in a meta tag for the script. */
  private async page(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const session = this.ensureSession(req, res)
    const html = (await fs.readFile(path.join(STATIC_DIR, 'index.html'), 'utf8')).replace('{{CSRF}}', session.csrf)
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' })
    res.end(html)
  }

  private sessionInfo(req: IncomingMessage, res: ServerResponse): void {
    const session = this.ensureSession(req, res)
    sendJson(res, 200, { csrfToken: session.csrf, passwordRequired: this.sessions.passwordRequired, authenticated: session.authenticated })
  }

  private ensureSession(req: IncomingMessage, res: ServerResponse): { csrf: string; authenticated: boolean } {
    const found = this.sessions.find(req)
    if (found) return found
    const fresh = this.sessions.create()
    res.setHeader('Set-Cookie', sessionCookie(fresh.id))
    return { csrf: fresh.csrf, authenticated: !this.sessions.passwordRequired }
  }

  private async apiRequest(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const session = this.sessions.find(req)
    if (!session) return sendJson(res, 401, { error: 'no session: load the page (or GET /api/session) first' })
    const changesState = req.method !== 'GET' && req.method !== 'HEAD'
    if (changesState) {
      const token = req.headers['x-csrf-token']
      if (typeof token !== 'string' || !safeEqual(token, session.csrf)) return sendJson(res, 403, { error: 'missing or wrong CSRF token' })
      if (!originAllowed(req.headers.origin, req.headers.host)) return sendJson(res, 403, { error: 'cross-origin request refused' })
    }
    let body: Record<string, unknown> = {}
    try {
      if (changesState) body = await readJson(req)
    } catch (err) {
      return sendJson(res, 400, { error: (err as Error).message })
    }
    if (url.pathname === '/api/login' && req.method === 'POST') return this.login(req, res, session.id, body)
    if (!session.authenticated) return sendJson(res, 401, { error: 'log in first' })
    try {
      const apiReq: ApiRequest = { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, body }
      sendJson(res, 200, await this.api.handle(apiReq))
    } catch (err) {
      if (err instanceof HttpError) return sendJson(res, err.status, { error: err.message })
      sendJson(res, 500, { error: (err as Error).message })
    }
  }

  private async login(req: IncomingMessage, res: ServerResponse, sessionId: string, body: Record<string, unknown>): Promise<void> {
    const address = req.socket.remoteAddress ?? '?'
    const wait = this.limiter.retryAfterMs(address)
    if (wait > 0) {
      res.setHeader('Retry-After', String(Math.ceil(wait / 1000)))
      return sendJson(res, 429, { error: `too many wrong passwords: try again in ${Math.ceil(wait / 1000)} s` })
    }
    const fresh = typeof body.password === 'string' ? await this.sessions.login(sessionId, body.password) : null
    if (!fresh) {
      this.limiter.failed(address)
      return sendJson(res, 401, { error: 'wrong password' })
    }
    this.limiter.succeeded(address)
    res.setHeader('Set-Cookie', sessionCookie(fresh.id))
    sendJson(res, 200, { csrfToken: fresh.csrf, authenticated: true })
  }
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  if (res.headersSent) return void res.end()
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' })
  res.end(JSON.stringify(value ?? null))
}

async function sendFile(res: ServerResponse, asset: { file: string; type: string }): Promise<void> {
  const data = await fs.readFile(asset.file)
  res.writeHead(200, { 'Content-Type': asset.type, 'Cache-Control': 'no-cache' })
  res.end(data)
}

/** A JSON object body (a form post from another site is not JSON: refused). */
function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) {
      req.resume()
      return reject(new Error('the body must be JSON (Content-Type: application/json)'))
    }
    let size = 0
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY) { req.destroy(); reject(new Error('body too large')) } else chunks.push(chunk)
    })
    req.on('end', () => {
      try {
        const value: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}')
        if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('the body must be a JSON object')
        resolve(value as Record<string, unknown>)
      } catch (err) {
        reject(new Error(`bad JSON body: ${(err as Error).message}`))
      }
    })
    req.on('error', reject)
  })
}
