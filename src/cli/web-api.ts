// The CLI as a client of the web UI's JSON API: when a `tsyncfs web` of this user runs on
// loopback without a password, status and cache ask it (the same numbers the page shows);
// otherwise they ask the daemons' control sockets directly (src/daemon/client.ts).
import http from 'http'
import { webServers } from '../web/registration'

export class WebApi {
  private constructor(private readonly url: string, private readonly cookie: string) {}

  /** A session with a running, password-free web server, or null. */
  static async connect(): Promise<WebApi | null> {
    for (const server of await webServers()) {
      if (server.passwordRequired) continue
      try {
        const { headers } = await get(server.url + '/api/session', '')
        const cookie = (headers['set-cookie'] ?? [])[0]?.split(';')[0]
        if (cookie) return new WebApi(server.url, cookie)
      } catch {}
    }
    return null
  }

  async get<T>(pathname: string): Promise<T> {
    const { status, body } = await get(this.url + pathname, this.cookie)
    const parsed = JSON.parse(body) as T & { error?: string }
    if (status !== 200) throw new Error(parsed.error ?? `HTTP ${status}`)
    return parsed
  }
}

function get(url: string, cookie: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: cookie ? { cookie } : {}, timeout: 30000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('timeout', () => req.destroy(new Error('the web server did not answer')))
    req.on('error', reject)
  })
}
