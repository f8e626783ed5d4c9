// Finding peers and replicating with them: one hyperswarm topic per folder, every
// connection replicates the whole corestore and runs the membership channel.
import Hyperswarm from 'hyperswarm'
import HyperDHT from 'hyperdht'
import Corestore from 'corestore'
import { FolderKeys } from '../secrets'
import { Certificate } from '../model/certificates'
import { MembershipChannel } from './membership'

/** Who keeps the folder's member certificates: the mounted folder, or a seed's replica. */
export interface MemberDirectory {
  allCertificates(): Certificate[]
  addCertificate(cert: Certificate): Promise<boolean>
  on(event: 'member', listener: (cert: Certificate) => void): unknown
}

export interface HostPort { host: string; port: number }

export interface NetworkOptions {
  bootstrap: HostPort[] | null // null: the public DHT
  bind: string | null
}

export interface PeerStatus {
  id: string
  address: string
  verified: boolean
  since: number
}

export function parseHostPorts(text: string): HostPort[] {
  return text.split(',').filter(Boolean).map((item) => {
    const i = item.lastIndexOf(':')
    const host = i > 0 ? item.slice(0, i) : ''
    const port = Number(item.slice(i + 1))
    if (!host || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad address "${item}": expected HOST:PORT`)
    return { host, port }
  })
}

function isLoopback(host: string): boolean {
  return host.startsWith('127.') || host === '::1' || host === 'localhost'
}

interface Peer { channel: MembershipChannel; status: PeerStatus }

export class FolderNetwork {
  private readonly swarm: Hyperswarm
  private readonly dht: HyperDHT
  private readonly peers = new Map<Hyperswarm.Connection, Peer>()

  constructor(
    private readonly keys: FolderKeys,
    private readonly store: Corestore,
    private readonly folder: MemberDirectory,
    opts: NetworkOptions,
    private readonly log: (message: string) => void = () => {}
  ) {
    this.dht = new HyperDHT({
      ...(opts.bootstrap ? { bootstrap: opts.bootstrap } : {}),
      ...(opts.bind ? { host: opts.bind } : {}),
      // A node bound to loopback is reachable by every peer that can reach it at all;
      // left "firewalled", hyperdht tries to holepunch over loopback and the first
      // connection stalls until its 15 s timeout (measured here).
      ...(opts.bind && isLoopback(opts.bind) ? { firewalled: false } : {})
    })
    this.swarm = new Hyperswarm({ dht: this.dht })
    this.swarm.on('connection', (conn, info) => this.onConnection(conn, info))
    folder.on('member', (cert: Certificate) => {
      for (const peer of this.peers.values()) peer.channel.announce([cert])
    })
  }

  async start(): Promise<void> {
    this.swarm.join(this.keys.topic, { server: true, client: true })
  }

  peerList(): PeerStatus[] {
    return [...this.peers.values()].map((p) => p.status)
  }

  private onConnection(conn: Hyperswarm.Connection, _info: Hyperswarm.PeerInfo): void {
    conn.on('error', (err: Error) => this.log(`connection error: ${err.message}`))
    this.store.replicate(conn)
    const raw = conn.rawStream
    const status: PeerStatus = {
      id: conn.remotePublicKey.toString('hex').slice(0, 16),
      address: raw?.remoteHost ? `${raw.remoteHost}:${raw.remotePort}` : 'unknown',
      verified: false,
      since: Date.now()
    }
    const channel = new MembershipChannel(this.keys, {
      connection: conn,
      onVerified: () => {
        status.verified = true
        this.log(`peer ${status.id} proved it holds the folder`)
      },
      onCertificate: (cert) => { this.folder.addCertificate(cert).catch(() => {}) }
    }, () => this.folder.allCertificates())
    this.peers.set(conn, { channel, status })
    this.log(`peer ${status.id} connected from ${status.address}`)
    conn.on('close', () => {
      this.peers.delete(conn)
      this.log(`peer ${status.id} disconnected`)
    })
  }

  async stop(): Promise<void> {
    await this.swarm.destroy()
    await this.dht.destroy()
  }
}
