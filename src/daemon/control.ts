// The control socket: one JSON request per connection, one JSON answer. The CLI's
// status and unmount, and the web UI (through src/daemon/client.ts), talk to a running
// daemon through it.
import net from 'net'
import { promises as fs } from 'fs'
import path from 'path'
import { mountKey, runtimeDir } from './paths'

export interface ControlRequest {
  cmd: 'status' | 'unmount' | 'cache' | 'pin' | 'unpin' | 'files' | 'secrets' | 'events' | 'transfer'
  lazy?: boolean
  path?: string
  since?: number // events: only those after this sequence number
}
export type ControlResponse = { ok: true; result?: unknown } | { ok: false; error: string }

export interface Registration {
  mountpoint: string
  pid: number
  socket: string
  folderId: string
  dataDir: string
}

export function registrationPaths(mountpoint: string): { file: string; socket: string } {
  const base = path.join(runtimeDir(), mountKey(mountpoint))
  return { file: base + '.json', socket: base + '.sock' }
}

export async function serve(socket: string, handler: (req: ControlRequest) => Promise<unknown>): Promise<net.Server> {
  await fs.mkdir(path.dirname(socket), { recursive: true, mode: 0o700 })
  await fs.rm(socket, { force: true })
  const server = net.createServer((conn) => {
    let buf = ''
    conn.on('error', () => {})
    conn.on('data', (chunk) => {
      buf += chunk
      const nl = buf.indexOf('\n')
      if (nl === -1) return
      let reply: Promise<ControlResponse>
      try {
        const req = JSON.parse(buf.slice(0, nl)) as ControlRequest
        reply = handler(req).then((result) => ({ ok: true as const, result }), (err: Error) => ({ ok: false as const, error: err.message }))
      } catch {
        reply = Promise.resolve({ ok: false, error: 'bad request' })
      }
      reply.then((r) => conn.end(JSON.stringify(r) + '\n'))
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(socket, () => resolve())
  })
  await fs.chmod(socket, 0o600)
  return server
}

export function request(socket: string, req: ControlRequest, timeoutMs = 30000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket)
    let buf = ''
    const timer = setTimeout(() => { conn.destroy(); reject(new Error('the daemon did not answer')) }, timeoutMs)
    conn.on('error', (err) => { clearTimeout(timer); reject(err) })
    conn.on('data', (chunk) => { buf += chunk })
    conn.on('end', () => {
      clearTimeout(timer)
      try { resolve(JSON.parse(buf) as ControlResponse) } catch { reject(new Error('bad answer from the daemon')) }
    })
    conn.write(JSON.stringify(req) + '\n')
  })
}

export async function register(reg: Registration): Promise<void> {
  const { file } = registrationPaths(reg.mountpoint)
  await fs.writeFile(file, JSON.stringify(reg), { mode: 0o600 })
}

export async function unregister(mountpoint: string): Promise<void> {
  const { file, socket } = registrationPaths(mountpoint)
  await fs.rm(file, { force: true })
  await fs.rm(socket, { force: true })
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Registrations of daemons that are still running. */
export function registrations(): Promise<Registration[]> {
  return liveRecords<Registration>(runtimeDir())
}

/** The JSON records (each with the pid of its process) in `dir` whose process still runs. */
export async function liveRecords<T extends { pid: number }>(dir: string): Promise<T[]> {
  const names = await fs.readdir(dir).catch(() => [] as string[])
  const out: T[] = []
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    try {
      const record = JSON.parse(await fs.readFile(path.join(dir, name), 'utf8')) as T
      if (isAlive(record.pid)) out.push(record)
    } catch {}
  }
  return out
}
