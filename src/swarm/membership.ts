// The membership channel: on every connection both sides prove they hold a secret of
// the folder, then gossip member certificates and the TCP port each accepts direct
// connections on. A peer that cannot prove it is dropped before it learns any member's
// drive key or port.
import Protomux from 'protomux'
import c from 'compact-encoding'
import { keyedHash, FolderKeys } from '../secrets'
import { Certificate, CertificateJson, fromJson, toJson } from '../model/certificates'

export interface MembershipPeer {
  connection: { publicKey: Buffer; remotePublicKey: Buffer; handshakeHash: Buffer; destroy(err?: Error): void }
  onVerified(): void
  onFailed(): void // called before the connection is destroyed for a wrong proof
  onCertificate(cert: Certificate): void
  onDirectPort(port: number): void // the TCP port the peer accepts direct connections on
}

function proof(keys: FolderKeys, handshakeHash: Buffer, sender: Buffer): Buffer {
  return keyedHash(keys.capabilityKey, 'tsyncfs membership proof', Buffer.concat([handshakeHash, sender]))
}

export class MembershipChannel {
  private readonly send: ((certs: Certificate[]) => void) | null = null
  verified = false

  /** `directPort`: the TCP port to tell a verified peer of; null: none. */
  constructor(keys: FolderKeys, peer: MembershipPeer, certificates: () => Certificate[], directPort: number | null) {
    const conn = peer.connection
    const mux = Protomux.from(conn)
    let message: { send(v: unknown): boolean } | null = null
    let portMessage: { send(v: unknown): boolean } | null = null
    const channel = mux.createChannel({
      protocol: 'tsyncfs/membership/1',
      id: keys.topic,
      handshake: c.buffer,
      onopen: (remoteProof: Buffer) => {
        if (!remoteProof || !remoteProof.equals(proof(keys, conn.handshakeHash, conn.remotePublicKey))) {
          peer.onFailed()
          conn.destroy(new Error('peer failed the folder proof'))
          return
        }
        this.verified = true
        peer.onVerified()
        message?.send(encode(certificates()))
        if (directPort !== null) portMessage?.send(directPort)
      }
    })
    if (!channel) return
    message = channel.addMessage({
      encoding: c.buffer,
      onmessage: (buf: Buffer) => {
        if (!this.verified) return
        for (const cert of decode(buf)) peer.onCertificate(cert)
      }
    })
    portMessage = channel.addMessage({
      encoding: c.uint,
      onmessage: (port: number) => {
        if (this.verified && Number.isInteger(port) && port > 0 && port < 65536) peer.onDirectPort(port)
      }
    })
    this.send = (certs) => { if (this.verified) message?.send(encode(certs)) }
    channel.open(proof(keys, conn.handshakeHash, conn.publicKey))
  }

  announce(certs: Certificate[]): void {
    this.send?.(certs)
  }
}

function encode(certs: Certificate[]): Buffer {
  return Buffer.from(JSON.stringify(certs.map(toJson)))
}

/** Garbage from a peer yields no certificates, never an exception. */
function decode(buf: Buffer): Certificate[] {
  try {
    const list = JSON.parse(buf.toString()) as unknown
    if (!Array.isArray(list)) return []
    return list.map((j) => fromJson(j as CertificateJson)).filter((x): x is Certificate => x !== null)
  } catch {
    return []
  }
}
