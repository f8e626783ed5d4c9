// Relaying for devices that cannot holepunch to each other: `tsyncfs seed --relay` runs a
// blind relay (the `blind-relay` package hyperdht uses) on a DHT node of its own. It only
// pairs two UDX streams and forwards their packets: the Noise stream between the two
// devices is end-to-end, so the relay sees ciphertext only.
//
// Its key pair derives from the folder topic, so every device of the folder (any kind of
// secret) knows where to ask without configuration, and nobody else does. Whoever holds a
// secret could run a relay under that key too; the worst it can do is not forward.
import HyperDHT from 'hyperdht'
import crypto from 'hypercore-crypto'
import { Server as RelayServer } from 'blind-relay'
import { keyedHash } from '../secrets'
import { KeyPair } from './direct'

export function relayKeyPair(topic: Buffer): KeyPair {
  return crypto.keyPair(keyedHash(topic, 'tsyncfs relay key pair'))
}

export class FolderRelay {
  private server: HyperDHT.Server | null = null
  private relay: RelayServer | null = null

  constructor(private readonly dht: HyperDHT, private readonly topic: Buffer, private readonly log: (message: string) => void) {}

  async start(): Promise<void> {
    const dht = this.dht
    const relay = new RelayServer({ createStream: (opts) => dht.createRawStream({ ...opts, framed: true }) })
    this.relay = relay
    this.server = dht.createServer((socket) => {
      relay.accept(socket, { id: socket.remotePublicKey }).on('error', () => {})
    })
    const keyPair = relayKeyPair(this.topic)
    await this.server.listen(keyPair)
    this.log(`relaying for the folder's devices (relay key ${keyPair.publicKey.toString('hex').slice(0, 16)})`)
  }

  async stop(): Promise<void> {
    await this.server?.close().catch(() => {})
    await this.relay?.close().catch(() => {})
    await this.dht.destroy()
  }
}
