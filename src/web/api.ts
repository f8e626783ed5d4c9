// The JSON HTTP API: the same operations as the CLI, over the daemons' control sockets
// (src/daemon/client.ts). Every route here is documented in the README.
import { ask, DaemonError, mountById, mounts, MountRef, statusOf, cacheOf } from '../daemon/client'
import { FormError, mountFolder, MountOptions, MountRequest } from './mounter'

export class HttpError extends Error {
  constructor(readonly status: number, message: string) { super(message) }
}

export interface ApiRequest { method: string; path: string; query: URLSearchParams; body: Record<string, unknown> }
type Handler = (req: ApiRequest, params: string[]) => Promise<unknown>
interface Route { method: string; pattern: RegExp; handler: Handler }

const SECRET_KINDS = ['readWrite', 'readOnly', 'encrypted'] as const

export class Api {
  private readonly routes: Route[] = []

  constructor(private readonly mountOptions: MountOptions) {
    this.route('GET', /^\/api\/folders$/, () => this.listFolders())
    this.route('POST', /^\/api\/folders$/, (req) => this.mount(req.body))
    this.route('GET', /^\/api\/folders\/([0-9a-f]{16})$/, (_req, [id]) => this.folder(id))
    this.route('GET', /^\/api\/folders\/([0-9a-f]{16})\/cache$/, async (_req, [id]) => cacheOf(await this.mountOf(id)))
    this.route('GET', /^\/api\/folders\/([0-9a-f]{16})\/files$/, async (req, [id]) =>
      ask(await this.mountOf(id), { cmd: 'files', path: req.query.get('path') ?? '/' }))
    this.route('GET', /^\/api\/folders\/([0-9a-f]{16})\/events$/, async (req, [id]) =>
      ask(await this.mountOf(id), { cmd: 'events', since: Number(req.query.get('since') ?? 0) || 0 }))
    this.route('GET', /^\/api\/folders\/([0-9a-f]{16})\/transfer$/, async (_req, [id]) => ask(await this.mountOf(id), { cmd: 'transfer' }))
    this.route('POST', /^\/api\/folders\/([0-9a-f]{16})\/secrets$/, (req, [id]) => this.secret(id, req.body.kind))
    this.route('POST', /^\/api\/folders\/([0-9a-f]{16})\/(pin|unpin)$/, async (req, [id, cmd]) =>
      ask(await this.mountOf(id), { cmd: cmd as 'pin' | 'unpin', path: stringField(req.body, 'path') }, 120000))
    this.route('POST', /^\/api\/folders\/([0-9a-f]{16})\/unmount$/, async (req, [id]) =>
      ask(await this.mountOf(id), { cmd: 'unmount', lazy: req.body.lazy === true }, 60000))
  }

  private route(method: string, pattern: RegExp, handler: Handler): void {
    this.routes.push({ method, pattern, handler })
  }

  /** The answer to an /api/ request; throws HttpError for the status to send. */
  async handle(req: ApiRequest): Promise<unknown> {
    const matching = this.routes.filter((r) => r.pattern.test(req.path))
    if (matching.length === 0) throw new HttpError(404, `no such API route: ${req.path}`)
    const route = matching.find((r) => r.method === req.method)
    if (!route) throw new HttpError(405, `${req.method} is not allowed on ${req.path}`)
    try {
      return await route.handler(req, route.pattern.exec(req.path)!.slice(1))
    } catch (err) {
      // The daemon's and mount's own messages are what the user should read.
      if (err instanceof FormError || err instanceof DaemonError) throw new HttpError(400, err.message)
      throw err
    }
  }

  private async listFolders(): Promise<unknown[]> {
    const out = []
    for (const m of await mounts()) {
      const transfer = ask(m, { cmd: 'transfer' }).catch(() => null)
      out.push(await statusOf(m).then(async (status) => ({ id: m.id, state: 'mounted', ...status, transfer: await transfer }),
        (err: Error) => ({ id: m.id, mountpoint: m.mountpoint, folderId: m.folderId, state: 'not answering', error: err.message })))
    }
    return out
  }

  private async folder(id: string): Promise<unknown> {
    const m = await this.mountOf(id)
    const [status, cache, transfer] = await Promise.all([statusOf(m), cacheOf(m), ask(m, { cmd: 'transfer' })])
    return { id, state: 'mounted', ...status, cache, transfer }
  }

  private async mount(body: Record<string, unknown>): Promise<unknown> {
    const req: MountRequest = { create: body.create === true, secret: optionalString(body.secret), mountpoint: optionalString(body.mountpoint) }
    const mounted = await mountFolder(req, this.mountOptions)
    const m = (await mounts()).find((x) => x.mountpoint === mounted.mountpoint)
    return { ...mounted, id: m?.id ?? null }
  }

  /** One secret per request, so the read-write one is only ever sent when asked for. */
  private async secret(id: string, kind: unknown): Promise<{ kind: string; secret: string }> {
    if (!SECRET_KINDS.includes(kind as typeof SECRET_KINDS[number])) throw new HttpError(400, `kind must be one of ${SECRET_KINDS.join(', ')}`)
    const secrets = await ask<Record<string, string | null>>(await this.mountOf(id), { cmd: 'secrets' })
    const secret = secrets[kind as string]
    if (!secret) throw new HttpError(400, `this device has no ${kind} secret of this folder (it was mounted with a weaker one)`)
    return { kind: kind as string, secret }
  }

  private async mountOf(id: string): Promise<MountRef> {
    const m = await mountById(id)
    if (!m) throw new HttpError(404, `no mounted folder with id ${id}`)
    return m
  }
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined
}

function stringField(body: Record<string, unknown>, name: string): string {
  const value = body[name]
  if (typeof value !== 'string' || !value.startsWith('/')) throw new HttpError(400, `${name} must be a path starting with /`)
  return value
}
