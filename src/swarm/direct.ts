// Direct connections over TCP, without any DHT: a listener for `--listen`, and dialers for
// `--peer` addresses and for peers found on the LAN. Every socket is wrapped in the same
// Noise secret stream hyperswarm uses (with this device's key pair), so the rest of the
// network code cannot tell a direct connection from a DHT one.
import net from 'net'
import NoiseSecretStream from '@hyperswarm/secret-stream'
import { HostPort } from './network'

// dht-tcp: found on the DHT, then connected over TCP to the port it told (faster than UDX).
export type Via = 'dht' | 'dht-tcp' | 'lan' | 'direct' | 'relay'
export interface KeyPair { publicKey: Buffer; secretKey: Buffer }

/** A handshaken connection from either side, and how it came to be; false: refused (a duplicate). */
export type OnStream = (stream: NoiseSecretStream, via: Via, address: string) => boolean

const HANDSHAKE_TIMEOUT_MS = 10000
// Both sides send a keep-alive every 5 s, so 20 s of silence means the peer is gone.
const KEEP_ALIVE_MS = 5000
const IDLE_TIMEOUT_MS = 20000

export const BACKOFF_MIN_MS = 1000
export const BACKOFF_MAX_MS = 60000
const QUIET_MS = 60000

export function formatAddress(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}

/** Wraps a TCP socket and calls `onOpen` once the handshake is done; gives up after a deadline. */
function secure(socket: net.Socket, initiator: boolean, keyPair: KeyPair, onOpen: (s: NoiseSecretStream) => unknown): NoiseSecretStream {
  socket.setNoDelay(true)
  socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy(new Error('handshake timed out')))
  const stream = new NoiseSecretStream(initiator, socket, { keyPair })
  stream.on('error', () => {}) // reported through 'close' and the dialer's state
  stream.opened.then((ok) => {
    if (!ok) return
    socket.setTimeout(0)
    stream.setKeepAlive(KEEP_ALIVE_MS)
    stream.setTimeout(IDLE_TIMEOUT_MS)
    onOpen(stream)
  }, () => {})
  return stream
}

/** Dials one address until stopped: again after every close, with exponential back-off while it fails. */
class Dialer {
  private delay = BACKOFF_MIN_MS
  private timer: NodeJS.Timeout | null = null
  private stream: NoiseSecretStream | null = null
  private state: 'idle' | 'connected' | 'unreachable' = 'idle'
  private confirmed = false
  stopped = false

  constructor(
    readonly address: HostPort,
    private readonly via: Via,
    private readonly keyPair: KeyPair,
    private readonly onStream: OnStream,
    private readonly log: (message: string) => void,
    // Known hosts are dialed forever; a LAN peer only until its connection ends, since it
    // announces itself again (perhaps on another port) when it comes back.
    private readonly persistent: boolean,
    private readonly onEnd: (refused: boolean) => void
  ) {}

  start(): void {
    this.attempt()
  }

  /** The peer on the current connection proved it holds the folder. */
  confirm(stream: object): void {
    if (stream !== this.stream) return
    this.confirmed = true
    this.delay = BACKOFF_MIN_MS
    this.setState('connected', '')
  }

  private attempt(): void {
    this.timer = null
    if (this.stopped) return
    let opened = false
    let refused = false
    this.confirmed = false
    let failure = 'closed during the handshake'
    const socket = net.connect({ host: this.address.host, port: this.address.port })
    socket.on('error', (err: NodeJS.ErrnoException) => { failure = err.code ?? err.message })
    this.stream = secure(socket, true, this.keyPair, (stream) => {
      opened = true
      refused = !this.onStream(stream, this.via, formatAddress(this.address))
    })
    this.stream.on('close', () => {
      this.stream = null
      if (this.stopped) return
      if (!this.persistent) return this.end(refused)
      if (!opened) this.setState('unreachable', failure)
      else if (!refused && !this.confirmed) this.setState('unreachable', 'closed before it proved it holds the folder')
      // A peer that was a member reconnects at once after it restarts; anything else (unreachable,
      // refused as a duplicate, gone before its proof) is tried again less and less often.
      this.schedule(this.confirmed ? BACKOFF_MIN_MS : this.nextDelay())
    })
  }

  private nextDelay(): number {
    const delay = this.delay
    this.delay = Math.min(this.delay * 2, BACKOFF_MAX_MS)
    return delay
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => this.attempt(), ms)
  }

  /** Logs only when the state changes, never once per try. */
  private setState(state: 'connected' | 'unreachable', detail: string): void {
    if (state === this.state) return
    this.state = state
    const where = formatAddress(this.address)
    if (state === 'connected') this.log(`${this.via} peer ${where} reached`)
    else this.log(`${this.via} peer ${where} unreachable (${detail}); retrying with back-off up to ${BACKOFF_MAX_MS / 1000} s`)
  }

  private end(refused: boolean): void {
    this.stopped = true
    this.onEnd(refused)
  }

  stop(): void {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.stream?.destroy()
  }
}

export interface DirectOptions {
  listen: number // TCP port to accept connections on; 0: any free port
  bind: string | null
}

export class DirectTransport {
  private server: net.Server | null = null
  private readonly dialers = new Map<string, Dialer>()
  private readonly sockets = new Set<NoiseSecretStream>()
  // LAN addresses whose device turned out to be connected already, until when to ignore them.
  private readonly quiet = new Map<string, number>()

  constructor(
    private readonly keyPair: KeyPair,
    private readonly opts: DirectOptions,
    private readonly onStream: OnStream,
    private readonly log: (message: string) => void
  ) {}

  /** Starts listening; resolves the port. */
  async start(): Promise<number> {
    const server = net.createServer((socket) => this.accept(socket))
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`cannot listen on TCP port ${this.opts.listen}: ${err.code ?? err.message}`)))
      server.listen(this.opts.listen, this.opts.bind ?? undefined, () => {
        server.removeAllListeners('error')
        resolve()
      })
    })
    server.on('error', (err) => this.log(`listener error: ${err.message}`))
    return (server.address() as net.AddressInfo).port
  }

  port(): number | null {
    const address = this.server?.address()
    return address && typeof address === 'object' ? address.port : null
  }

  private accept(socket: net.Socket): void {
    const host = (socket.remoteAddress ?? '').replace(/^::ffff:/, '')
    const from = host && socket.remotePort ? formatAddress({ host, port: socket.remotePort }) : 'unknown'
    const stream = secure(socket, false, this.keyPair, (s) => this.onStream(s, 'direct', from))
    this.track(stream)
  }

  /** Keeps a connection to `address` from now on (a known host, or a peer found on the LAN). */
  dial(address: HostPort, via: Via): void {
    const key = formatAddress(address)
    if (this.dialers.has(key) || (this.quiet.get(key) ?? 0) > Date.now()) return
    const dialer = new Dialer(address, via, this.keyPair, (stream, v, a) => {
      this.track(stream)
      return this.onStream(stream, v, a)
    }, this.log, via === 'direct', (refused) => {
      this.dialers.delete(key)
      if (refused) this.quiet.set(key, Date.now() + QUIET_MS)
    })
    this.dialers.set(key, dialer)
    dialer.start()
  }

  /** A connection's peer proved it holds the folder: its dialer may reconnect at once later. */
  confirm(stream: object): void {
    for (const dialer of this.dialers.values()) dialer.confirm(stream)
  }

  /** Stops dialing an address for good: it answered, but not as a member of this folder. */
  forget(address: string): void {
    const dialer = this.dialers.get(address)
    if (!dialer) return
    dialer.stop()
    this.dialers.delete(address)
  }

  private track(stream: NoiseSecretStream): void {
    this.sockets.add(stream)
    stream.on('close', () => this.sockets.delete(stream))
  }

  async stop(): Promise<void> {
    for (const dialer of this.dialers.values()) dialer.stop()
    this.dialers.clear()
    for (const stream of this.sockets) stream.destroy()
    if (this.server) await new Promise<void>((resolve) => this.server!.close(() => resolve()))
  }
}
