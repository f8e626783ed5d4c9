// Local discovery: every few seconds each device multicasts, on every IPv4 interface,
// "a device of folder X listens on TCP port P". X is not the topic but a keyed hash of
// it that changes every few minutes, so a listener on the LAN learns neither the topic nor
// the secret, cannot link announcements across windows, and cannot join; a replayed
// announcement only makes peers dial someone who then fails the membership proof.
import dgram from 'dgram'
import os from 'os'
import { randomBytes } from 'crypto'
import { keyedHash } from '../secrets'
import { HostPort } from './network'

export const LAN_GROUP = '239.255.77.77'
export const LAN_PORT = 49738
const MAGIC = Buffer.from('tsyncfs1')
const ANNOUNCE_EVERY_MS = 2000
const WINDOW_MS = 5 * 60 * 1000
const PACKET_BYTES = MAGIC.length + 32 + 8 + 2

/** The folder's tag for one time window. */
export function lanTag(topic: Buffer, window: number): Buffer {
  const w = Buffer.alloc(8)
  w.writeBigUInt64BE(BigInt(window))
  return keyedHash(topic, 'tsyncfs lan announcement', w)
}

function currentWindow(now = Date.now()): number {
  return Math.floor(now / WINDOW_MS)
}

function ipv4Interfaces(): string[] {
  return Object.values(os.networkInterfaces()).flat()
    .filter((i): i is os.NetworkInterfaceInfo => !!i && i.family === 'IPv4' && !i.internal)
    .map((i) => i.address)
}

export class LanDiscovery {
  // Tells our own announcements apart from others', without revealing anything lasting.
  private readonly instance = randomBytes(8)
  private socket: dgram.Socket | null = null
  private timer: NodeJS.Timeout | null = null
  private joined = new Set<string>()
  private readonly announcers = new Map<string, number>() // host -> when last heard

  constructor(
    private readonly topic: Buffer,
    private readonly tcpPort: number,
    private readonly onPeer: (address: HostPort) => void,
    private readonly log: (message: string) => void
  ) {}

  async start(): Promise<void> {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true })
    this.socket = socket
    // A port held by another program (without SO_REUSEADDR) turns LAN discovery off; it
    // must not keep the mount from starting.
    const failed = await new Promise<Error | null>((resolve) => {
      socket.once('error', resolve)
      socket.bind(LAN_PORT, () => {
        socket.off('error', resolve)
        resolve(null)
      })
    })
    if (failed) {
      this.log(`lan discovery is off: cannot bind UDP port ${LAN_PORT}: ${failed.message}`)
      this.socket = null
      socket.close()
      return
    }
    socket.on('message', (msg, rinfo) => this.receive(msg, rinfo.address))
    socket.on('error', (err) => this.log(`lan discovery: ${err.message}`))
    socket.setMulticastLoopback(true) // two devices on one host find each other too
    this.announce()
    this.timer = setInterval(() => this.announce(), ANNOUNCE_EVERY_MS)
  }

  private packet(): Buffer {
    const port = Buffer.alloc(2)
    port.writeUInt16BE(this.tcpPort)
    return Buffer.concat([MAGIC, lanTag(this.topic, currentWindow()), this.instance, port])
  }

  /** Joins the group on interfaces that appeared, and sends on each (no route needed). */
  private announce(): void {
    const socket = this.socket
    if (!socket) return
    const packet = this.packet()
    for (const address of ipv4Interfaces()) {
      try {
        if (!this.joined.has(address)) {
          socket.addMembership(LAN_GROUP, address)
          this.joined.add(address)
        }
        socket.setMulticastInterface(address)
        socket.send(packet, LAN_PORT, LAN_GROUP)
      } catch (err) {
        this.log(`lan discovery on ${address}: ${(err as Error).message}`)
      }
    }
  }

  private receive(msg: Buffer, from: string): void {
    if (msg.length !== PACKET_BYTES || !msg.subarray(0, MAGIC.length).equals(MAGIC)) return
    const tag = msg.subarray(MAGIC.length, MAGIC.length + 32)
    const instance = msg.subarray(MAGIC.length + 32, MAGIC.length + 40)
    if (instance.equals(this.instance) || !this.isOurFolder(tag)) return
    this.announcers.set(from, Date.now())
    // Only one side dials, so two devices do not race two connections to each other.
    if (Buffer.compare(this.instance, instance) > 0) return
    this.onPeer({ host: from, port: msg.readUInt16BE(MAGIC.length + 40) })
  }

  /** The current window or the one before, for clocks a little apart and windows turning. */
  private isOurFolder(tag: Buffer): boolean {
    const w = currentWindow()
    return [w, w - 1, w + 1].some((x) => lanTag(this.topic, x).equals(tag))
  }

  /** Whether `host` announced this folder lately. */
  heard(host: string): boolean {
    return (this.announcers.get(host) ?? 0) > Date.now() - 10 * ANNOUNCE_EVERY_MS
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.socket?.close()
    this.socket = null
  }
}
