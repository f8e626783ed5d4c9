// Finding peers and replicating with them: one hyperswarm topic per folder, plus direct
// TCP connections to known hosts and to peers found on the LAN. Every connection, however
// found, replicates the whole corestore and runs the membership channel. A peer found on
// the DHT is also dialed over TCP at the port it tells: where that works, the TCP
// connection replaces the DHT one (inside a busy daemon here, UDX carried less than half
// of what TCP does).
import Hyperswarm from 'hyperswarm'
import HyperDHT from 'hyperdht'
import Corestore from 'corestore'
import crypto from 'hypercore-crypto'
import { DirectTransport, KeyPair, Via } from './direct'
import { LanDiscovery } from './lan'
import { FolderRelay, relayKeyPair } from './relay'
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

/** Which ways of finding peers are on. */
export interface Discovery {
  dht: boolean // false: no DHT node at all (known hosts and the LAN only)
  lan: boolean // announce and find peers on the local network
  forceRelay: boolean // reach DHT peers through the folder's relay even when holepunching works
  listen: number | null // TCP port for direct connections; null: an ephemeral one
  peers: HostPort[] // known hosts, dialed directly and kept connected
}

export interface NetworkOptions extends Discovery {
  bootstrap: HostPort[] | null // null: the public DHT
  bind: string | null
  relay?: boolean // serve as the folder's relay (a seed)
}

export interface PeerStatus {
  id: string
  address: string
  via: Via // how the connection came to be: dht, lan, direct (a known host or --listen), relay
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

/** What both a hyperswarm connection and a direct one offer. */
export interface PeerConnection {
  publicKey: Buffer
  remotePublicKey: Buffer
  handshakeHash: Buffer
  isInitiator: boolean
  destroy(err?: Error): void
  on(event: 'close', listener: () => void): unknown
  on(event: 'error', listener: (err: Error) => void): unknown
}

interface Peer {
  conn: PeerConnection
  retiring: boolean // a duplicate, closed soon
  channel: MembershipChannel
  status: PeerStatus
  reject(reason: string): void
}

// A peer that has not proved it holds the folder by then is dropped: a device of another
// folder never opens our membership channel at all, so it would never fail the proof. The
// side that dialed directly gives up first, so it is the one that learns to stop dialing.
const PROOF_TIMEOUT_MS = 15000
const DIALER_PROOF_TIMEOUT_MS = 10000
const DUPLICATE_GRACE_MS = 5000
// Hyperswarm looks the topic up (and announces it) again only every 10 minutes. Two devices
// that each looked before the other had announced then waited that long (seen here when
// both started at once; also after a DHT that was unreachable at the start). While no
// device is connected, look again soon, then less often.
const ALONE_LOOKUP_FIRST_MS = 5000
const ALONE_LOOKUP_MAX_MS = 120000

const hex = (key: Buffer): string => key.toString('hex')

export class FolderNetwork {
  private readonly keyPair: KeyPair = crypto.keyPair()
  private readonly swarm: Hyperswarm | null = null
  private topicDiscovery: Hyperswarm.Discovery | null = null
  private readonly dht: HyperDHT | null = null
  private readonly direct: DirectTransport
  private lan: LanDiscovery | null = null
  private relay: FolderRelay | null = null
  // The host of the folder's relay: a DHT connection coming from there was relayed (the
  // relay opens a new port for every stream it relays, so the port tells nothing).
  private readonly relayHosts = new Set<string>()
  private probingRelay = false
  private readonly peers = new Map<PeerConnection, Peer>()
  private readonly byKey = new Map<string, Peer>()
  // Remote keys that connected and failed the folder proof: never connected to again.
  private readonly denied = new Set<string>()
  private aloneLookup: NodeJS.Timeout | null = null

  constructor(
    private readonly keys: FolderKeys,
    private readonly store: Corestore,
    private readonly folder: MemberDirectory,
    private readonly opts: NetworkOptions,
    private readonly log: (message: string) => void = () => {}
  ) {
    if (opts.dht) {
      this.dht = createDht(opts)
      const relayKey = relayKeyPair(keys.topic).publicKey
      this.swarm = new Hyperswarm({
        dht: this.dht,
        keyPair: this.keyPair,
        firewall: (key) => this.refuseFromDht(key),
        // Hyperswarm asks with force=true once holepunching failed. The key is offered only
        // once the relay answered, so that devices without one never wait on it.
        relayThrough: (force) => {
          if (!force && !opts.forceRelay) return null
          this.learnRelayAddress(relayKey)
          return opts.forceRelay || this.relayHosts.size > 0 ? relayKey : null
        }
      })
      this.swarm.on('connection', (conn, info) => this.onConnection(conn, 'dht', dhtAddress(conn), info))
      // On a DHT node of its own, serving under the folder's relay key pair. A relay is only
      // useful where everyone reaches it, so it never waits to learn that.
      if (opts.relay) this.relay = new FolderRelay(createDht(opts, { firewalled: false }), keys.topic, log)
    }
    this.direct = new DirectTransport(this.keyPair, { listen: opts.listen ?? 0, bind: opts.bind }, (stream, via, address) => this.onConnection(stream, via, address, null), log)
    folder.on('member', (cert: Certificate) => {
      for (const peer of this.peers.values()) peer.channel.announce([cert])
    })
  }

  async start(): Promise<void> {
    const port = await this.direct.start()
    if (this.opts.listen !== null) this.log(`listening for direct connections on port ${port}`)
    for (const address of this.opts.peers) this.direct.dial(address, 'direct')
    if (this.opts.lan) {
      this.lan = new LanDiscovery(this.keys.topic, port, (address) => this.direct.dial(address, 'lan'), this.log)
      await this.lan.start()
    }
    await this.relay?.start()
    this.topicDiscovery = this.swarm?.join(this.keys.topic, { server: true, client: true }) ?? null
    this.lookAgainWhileAlone()
  }

  /** Refreshes the topic's discovery after `delay`, and again at doubling intervals, until
   *  a device is connected. */
  private lookAgainWhileAlone(delay = ALONE_LOOKUP_FIRST_MS): void {
    if (this.aloneLookup) clearTimeout(this.aloneLookup)
    this.aloneLookup = null
    if (!this.topicDiscovery) return
    this.aloneLookup = setTimeout(() => {
      this.aloneLookup = null
      if (this.byKey.size > 0) return
      this.topicDiscovery?.refresh().catch(() => {})
      this.lookAgainWhileAlone(Math.min(delay * 2, ALONE_LOOKUP_MAX_MS))
    }, delay)
    this.aloneLookup.unref()
  }

  /** Connects to the relay once, to learn its address (hyperdht does not say which connections it relayed). */
  private learnRelayAddress(relayKey: Buffer): void {
    if (this.relayHosts.size > 0 || this.probingRelay || !this.dht) return
    this.probingRelay = true
    const probe = this.dht.connect(relayKey)
    probe.on('error', (err) => this.log(`relay probe: ${err.message}`))
    probe.on('open', () => {
      if (probe.rawStream) this.relayHosts.add(probe.rawStream.remoteHost)
      this.log(`the folder's relay is on ${[...this.relayHosts].join(', ')}`)
      probe.destroy()
    })
    probe.on('close', () => { this.probingRelay = false })
  }

  peerList(): PeerStatus[] {
    return [...this.peers.values()].filter((p) => !p.retiring).map((p) => ({ ...p.status, via: this.foundBy(p) }))
  }

  /**
   * Decided when asked, since what tells it may come later: a connection we accepted
   * counts as found on the LAN if its host announces the folder there, and one from the
   * relay's host as relayed (hyperdht does not say which connections it relayed).
   */
  private foundBy(peer: Peer): Via {
    const { via, address } = peer.status
    if (via === 'direct' && !peer.conn.isInitiator && this.lan?.heard(hostOf(address))) return 'lan'
    if (via === 'dht' && this.relayHosts.has(hostOf(address))) return 'relay'
    return via
  }

  /** Hyperswarm asks before every connection: not to denied keys, nor to peers already connected directly. */
  private refuseFromDht(key: Buffer): boolean {
    const existing = this.byKey.get(hex(key))
    return this.denied.has(hex(key)) || (!!existing && existing.status.via !== 'dht')
  }

  /** Takes a connection, or refuses it (false) as denied or a duplicate. */
  private onConnection(conn: PeerConnection, via: Via, address: string, info: Hyperswarm.PeerInfo | null): boolean {
    conn.on('error', (err: Error) => this.log(`connection error: ${err.message}`))
    const key = hex(conn.remotePublicKey)
    if (this.denied.has(key)) {
      conn.destroy()
      return false
    }
    // The other side of an upgrade: a peer already connected over the DHT dialed our port.
    if (via === 'direct' && !conn.isInitiator && this.byKey.get(key)?.status.via.startsWith('dht')) via = 'dht-tcp'
    const keep = this.keepAgainstExisting(conn, via)
    this.store.replicate(conn)
    const status: PeerStatus = { id: key.slice(0, 16), address, via, verified: false, since: Date.now() }
    const timeout = via !== 'dht' && conn.isInitiator ? DIALER_PROOF_TIMEOUT_MS : PROOF_TIMEOUT_MS
    const timer = setTimeout(() => {
      // A DHT peer announced the folder's topic: a slow or half-opened connection, not a
      // device of another folder; hyperswarm dials it again. Known hosts and LAN devices
      // may be of any folder: those are not dialed again.
      if (info) {
        this.log(`peer ${status.id} at ${address} (${via}) did not prove it holds the folder in time: dropped, to be dialed again`)
        conn.destroy()
      } else {
        peer.reject('did not prove it holds the folder in time')
      }
    }, timeout)
    const peer: Peer = {
      conn,
      retiring: false,
      status,
      channel: new MembershipChannel(this.keys, {
        connection: conn,
        onVerified: () => {
          clearTimeout(timer)
          status.verified = true
          this.direct.confirm(conn)
          this.log(`peer ${status.id} (${via}) proved it holds the folder`)
        },
        onFailed: () => peer.reject('failed the folder proof'),
        onCertificate: (cert) => { this.folder.addCertificate(cert).catch(() => {}) },
        onDirectPort: (port) => this.upgrade(peer, port)
      }, () => this.folder.allCertificates(), this.opts.forceRelay ? null : this.direct.port()),
      reject: (reason) => {
        clearTimeout(timer)
        if (this.denied.has(key)) return
        this.denied.add(key)
        info?.ban(true)
        if (via !== 'dht') this.direct.forget(address)
        this.log(`peer ${status.id} at ${address} (${via}) ${reason}: dropped and not retried`)
        conn.destroy()
      }
    }
    this.peers.set(conn, peer)
    if (keep) this.byKey.set(key, peer)
    else this.retire(peer)
    this.log(`peer ${status.id} connected (${via}) from ${address}${keep ? '' : ' (a duplicate, closed soon)'}`)
    conn.on('close', () => {
      clearTimeout(timer)
      this.peers.delete(conn)
      if (this.byKey.get(key) === peer) this.byKey.delete(key)
      this.log(`peer ${status.id} disconnected`)
      if (this.byKey.size === 0) this.lookAgainWhileAlone()
      if (via !== 'dht' && !this.byKey.has(key)) this.allowDhtAgain(conn.remotePublicKey)
    })
    return keep
  }

  /** Dials a verified DHT peer over TCP at the port it told, on the host its DHT connection comes from. */
  private upgrade(peer: Peer, port: number): void {
    if (this.opts.forceRelay || peer.retiring || this.foundBy(peer) !== 'dht') return
    this.direct.dial({ host: hostOf(peer.status.address), port }, 'dht-tcp')
  }

  /**
   * Hyperswarm bans a peer its firewall refused once (we refuse DHT connections from peers
   * connected directly): when the direct connection ends, the DHT may reach it again.
   */
  private allowDhtAgain(remoteKey: Buffer): void {
    const info = this.swarm?.peers.get(hex(remoteKey))
    if (!info?.banned || this.denied.has(hex(remoteKey))) return
    info.ban(false)
    this.topicDiscovery?.refresh().catch(() => {})
  }

  /**
   * Closes a duplicate connection after a grace period, not at once: the other side may be
   * using it already, and a core that was opening while its only stream closed was seen
   * never to replicate on the stream that remained.
   */
  private retire(peer: Peer): void {
    peer.retiring = true
    setTimeout(() => peer.conn.destroy(), DUPLICATE_GRACE_MS).unref()
  }

  /**
   * One connection per remote device. A direct one beats a DHT one (faster, and its dialer
   * would otherwise retry); between two direct ones, both sides keep the one dialed by the
   * smaller public key, so they agree without talking.
   */
  private keepAgainstExisting(conn: PeerConnection, via: Via): boolean {
    const existing = this.byKey.get(hex(conn.remotePublicKey))
    if (!existing) return true
    const isDirect = (v: Via): boolean => v !== 'dht' && v !== 'relay'
    let keepNew: boolean
    if (isDirect(via) !== isDirect(existing.status.via)) keepNew = isDirect(via)
    else if (isDirect(via)) keepNew = dialerKey(conn).compare(dialerKey(existing.conn)) < 0
    else keepNew = false
    if (keepNew) {
      this.byKey.delete(hex(conn.remotePublicKey))
      this.retire(existing)
    }
    return keepNew
  }

  async stop(): Promise<void> {
    if (this.aloneLookup) clearTimeout(this.aloneLookup)
    this.topicDiscovery = null // no lookup after this
    this.lan?.stop()
    await this.relay?.stop()
    await this.direct.stop()
    await this.swarm?.destroy()
    await this.dht?.destroy()
  }
}

function createDht(opts: NetworkOptions, extra: { firewalled?: boolean } = {}): HyperDHT {
  return new HyperDHT({
    ...(opts.bootstrap ? { bootstrap: opts.bootstrap } : {}),
    ...(opts.bind ? { host: opts.bind } : {}),
    ...reachability(opts),
    ...extra
  })
}

/** What the DHT node tells peers of its reachability, which decides how they connect. */
function reachability(opts: NetworkOptions): { firewalled?: boolean; ephemeral?: boolean; quickFirewall?: boolean } {
  // A node that says it is reachable ("open") is connected to directly, by both sides,
  // without a relay, however unreachable it turns out to be. Forced to relay, it never says so.
  if (opts.forceRelay) return { ephemeral: true, quickFirewall: false }
  // A node bound to loopback is reachable by every peer that can reach it at all;
  // left "firewalled", hyperdht tries to holepunch over loopback and the first
  // connection stalls until its 15 s timeout (measured here).
  if (opts.bind && isLoopback(opts.bind)) return { firewalled: false }
  return {}
}

function dialerKey(conn: PeerConnection): Buffer {
  return conn.isInitiator ? conn.publicKey : conn.remotePublicKey
}

function hostOf(address: string): string {
  return address.slice(0, address.lastIndexOf(':'))
}

function dhtAddress(conn: Hyperswarm.Connection): string {
  const raw = conn.rawStream
  return raw?.remoteHost ? `${raw.remoteHost}:${raw.remotePort}` : 'unknown'
}
