// `tsyncfs web`: serves the web UI and its JSON API until stopped.
import { promises as fs } from 'fs'
import path from 'path'
import { UserError } from '../user-error'
import { FlagSpec, Parsed } from './args'
import { hashPassword, isPasswordHash } from '../web/auth'
import { isLoopback, WebServer } from '../web/server'
import { registerWeb, unregisterWeb } from '../web/registration'

const DEFAULT_LISTEN = '127.0.0.1:8888'

export const webCommand: { usage: string; flags: FlagSpec; run(args: Parsed): Promise<void> } = {
  usage: [
    'tsyncfs web [--listen HOST:PORT] [--password-file FILE] [--data-dir DIR]',
    '  Serves the web UI and its JSON API (default http://127.0.0.1:8888) until stopped.',
    '  --listen HOST:PORT    where to listen; anything but loopback needs --password-file',
    '  --password-file FILE  a password hash made by `tsyncfs web --hash-password`',
    '  --data-dir DIR        data dir of the folders mounted from the UI (env TSYNCFS_DATA_DIR)',
    '  --hash-password       read a password on stdin, print its scrypt hash for --password-file'
  ].join('\n'),
  flags: { listen: 'string', 'password-file': 'string', 'data-dir': 'string', 'hash-password': 'boolean', help: 'boolean' },
  async run({ flags }) {
    if (flags['hash-password']) return printPasswordHash()
    const { host, port } = parseListen(String(flags.listen ?? DEFAULT_LISTEN))
    const passwordHash = flags['password-file'] ? await readPasswordHash(String(flags['password-file'])) : null
    if (!isLoopback(host) && !passwordHash) {
      throw new UserError(`listening on ${host} (not loopback) needs a password: --password-file FILE (make one with tsyncfs web --hash-password)`, 2)
    }
    const dataDir = typeof flags['data-dir'] === 'string' ? path.resolve(flags['data-dir']) : null
    const server = new WebServer({ host, port, passwordHash, dataDir, bin: process.argv[1] })
    const bound = await server.listen().catch((err: NodeJS.ErrnoException) => {
      throw new UserError(`cannot listen on ${host}:${port}: ${err.code ?? err.message}`)
    })
    const shown = bound.host.includes(':') ? `[${bound.host}]` : bound.host
    const url = `http://${shown}:${bound.port}`
    await registerWeb({ pid: process.pid, url: isLoopback(bound.host) ? url : `http://127.0.0.1:${bound.port}`, passwordRequired: !!passwordHash })
    console.log(`serving the tsyncfs web UI at ${url}`)
    const stop = () => server.close().then(() => unregisterWeb(process.pid)).then(() => process.exit(0))
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
  }
}

function parseListen(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':')
  const host = text.slice(0, i).replace(/^\[(.*)\]$/, '$1')
  const port = Number(text.slice(i + 1))
  if (i <= 0 || !host || !Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`bad --listen "${text}": expected HOST:PORT`, 2)
  return { host, port }
}

async function readPasswordHash(file: string): Promise<string> {
  const text = (await fs.readFile(file, 'utf8').catch(() => {
    throw new UserError(`cannot read the password file ${file}`, 2)
  })).trim()
  // A plain password in a file would be stored unhashed: refuse it.
  if (!isPasswordHash(text)) throw new UserError(`${file} does not hold a password hash: make one with tsyncfs web --hash-password`, 2)
  return text
}

async function printPasswordHash(): Promise<void> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  const password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
  if (password.length < 8) throw new UserError('the password must have at least 8 characters', 2)
  console.log(await hashPassword(password))
}
