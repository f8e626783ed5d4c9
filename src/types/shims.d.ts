// Type shims for the untyped holepunch packages and fuse-native.
// Only the surface tsyncfs uses is declared; everything else stays unknown.

declare module 'hypercore-crypto' {
  export interface KeyPair { publicKey: Buffer; secretKey: Buffer }
  export function keyPair(seed?: Buffer): KeyPair
  export function sign(message: Buffer, secretKey: Buffer): Buffer
  export function verify(message: Buffer, signature: Buffer, publicKey: Buffer): boolean
  export function hash(data: Buffer | Buffer[]): Buffer
  export function discoveryKey(key: Buffer): Buffer
  export function randomBytes(n: number): Buffer
}

declare module 'sodium-universal' {
  export function crypto_generichash(out: Buffer, input: Buffer, key?: Buffer): void
  export function randombytes_buf(buf: Buffer): void
}

declare module 'hypercore' {
  import { EventEmitter } from 'events'
  interface Download { done(): Promise<void>; destroy(): void }
  class Hypercore extends EventEmitter {
    key: Buffer
    discoveryKey: Buffer
    length: number
    contiguousLength: number
    byteLength: number
    writable: boolean
    opened: boolean
    closed: boolean
    manifest: unknown | null
    /** Internal in part: what hypercore knows of each peer replicating this core. */
    peers: Array<{
      remotePublicKey: Buffer
      remoteLength: number
      remoteContiguousLength: number
      paused: boolean
      inflight: number
      stats: { wireRequest: { tx: number }; wireData: { rx: number }; backoffs: number; notAvailableBackoffs: number }
    }>
    ready(): Promise<void>
    close(): Promise<void>
    get(index: number, opts?: { wait?: boolean; timeout?: number; valueEncoding?: unknown }): Promise<Buffer | null>
    has(start: number, end?: number): Promise<boolean>
    append(blocks: Buffer | Buffer[]): Promise<{ length: number; byteLength: number }>
    download(range?: { start?: number; end?: number; linear?: boolean; blocks?: number[] }): Download
    clear(start: number, end?: number): Promise<unknown>
    update(opts?: { wait?: boolean }): Promise<boolean>
    setActive(active: boolean): void
    info(opts?: { storage?: boolean }): Promise<unknown>
    static defaultStorage(dir: string, opts?: { writeBufferSize?: number; blobGarbageCollectionAgeCutOff?: number }): object
    /** Internal: the core's RocksDB ranges, compactable on their own. */
    core?: { state?: { storage?: { compact(): Promise<unknown> } } }
  }
  export = Hypercore
}

declare module 'corestore' {
  import Hypercore from 'hypercore'
  interface GetOptions {
    key?: Buffer
    name?: string
    encryption?: { key: Buffer } | null
    exclusive?: boolean
    active?: boolean
    keyPair?: unknown
  }
  class Corestore {
    constructor(storage: string | object, opts?: { primaryKey?: Buffer; readOnly?: boolean; globalCache?: import('rache') })
    storage: { compact(): Promise<void> }
    ready(): Promise<void>
    close(): Promise<void>
    get(opts: GetOptions | Buffer): Hypercore
    namespace(name: string): Corestore
    session(): Corestore
    replicate(stream: unknown, opts?: unknown): NodeJS.ReadWriteStream
    findingPeers(): () => void
    /** Calls `fn` with corestore's internal core object whenever a core is opened. */
    watch(fn: (core: unknown) => void): void
  }
  export = Corestore
}

declare module 'hyperdrive' {
  import Corestore from 'corestore'
  import Hypercore from 'hypercore'
  interface BlobId { blockOffset: number; blockLength: number; byteOffset: number; byteLength: number }
  interface DriveEntry<M> {
    seq: number
    key: string
    value: { executable: boolean; linkname: string | null; blob: BlobId | null; metadata: M | null }
  }
  interface Blobs { core: Hypercore }
  /** The drive's hyperbee: its history gives each put's raw key (with hyperdrive's prefix). */
  interface Bee<M> {
    core: Hypercore
    checkout(version: number): Bee<M>
    createHistoryStream(opts: { gte: number; lt: number }): AsyncIterable<{ type: 'put' | 'del'; seq: number; key: string; value: { metadata?: M; entries?: unknown[] } | null }>
    close(): Promise<void>
  }
  interface Batch<M> {
    /** The batch's hyperbee: keys outside hyperdrive's files (utf-8 keys, JSON values). */
    db: { put(key: string, value: unknown): Promise<void> }
    putEntry(name: string, entry: { metadata: M }): Promise<void>
    flush(): Promise<void>
    close(): Promise<void>
  }
  class Hyperdrive<M = unknown> {
    static getContentKey(core: Hypercore, key?: Buffer): Buffer | null
    constructor(store: Corestore, key?: Buffer | null, opts?: { encryptionKey?: Buffer })
    key: Buffer
    discoveryKey: Buffer
    version: number
    writable: boolean
    core: Hypercore
    db: Bee<M>
    blobs: Blobs | null
    ready(): Promise<void>
    close(): Promise<void>
    getBlobs(): Promise<Blobs>
    putEntry(name: string, entry: { metadata: M }): Promise<void>
    entry(name: string): Promise<DriveEntry<M> | null>
    list(folder?: string, opts?: { recursive?: boolean }): AsyncIterable<DriveEntry<M>>
    batch(): Batch<M>
  }
  export = Hyperdrive
}

declare module 'hyperswarm' {
  import { EventEmitter } from 'events'
  interface PeerInfo { publicKey: Buffer; topics: Buffer[]; client: boolean; banned: boolean; ban(banned: boolean): void }
  interface Discovery { flushed(): Promise<void>; refresh(): Promise<void>; destroy(): Promise<void> }
  interface Connection extends NodeJS.ReadWriteStream {
    remotePublicKey: Buffer
    publicKey: Buffer
    handshakeHash: Buffer
    isInitiator: boolean
    rawStream?: { remoteHost?: string; remotePort?: number }
    destroy(err?: Error): void
  }
  class Hyperswarm extends EventEmitter {
    constructor(opts?: { dht?: unknown; keyPair?: unknown; maxPeers?: number; firewall?: (key: Buffer) => boolean
      relayThrough?: (force: boolean) => Buffer | null })
    connections: Set<Connection>
    peers: Map<string, PeerInfo> // by hex public key
    keyPair: { publicKey: Buffer }
    join(topic: Buffer, opts?: { server?: boolean; client?: boolean }): Discovery
    flush(): Promise<void>
    destroy(): Promise<void>
    on(event: 'connection', listener: (conn: Connection, info: PeerInfo) => void): this
  }
  namespace Hyperswarm { export { Connection, PeerInfo, Discovery } }
  export = Hyperswarm
}

declare module 'hyperdht' {
  interface Node { host: string; port: number }
  class HyperDHT {
    constructor(opts?: { bootstrap?: Array<string | Node>; host?: string; port?: number; ephemeral?: boolean; firewalled?: boolean; quickFirewall?: boolean })
    static bootstrapper(port: number, host: string, opts?: { host?: string }): HyperDHT
    ready(): Promise<void>
    fullyBootstrapped(): Promise<void>
    destroy(): Promise<void>
    address(): { host: string; port: number }
    connect(remotePublicKey: Buffer): HyperDHT.Socket
    createServer(onconnection: (socket: HyperDHT.Socket) => void): HyperDHT.Server
    createRawStream(opts?: Record<string, unknown>): unknown
  }
  namespace HyperDHT {
    interface Socket {
      remotePublicKey: Buffer
      rawStream: { remoteHost: string; remotePort: number } | null
      on(event: 'open' | 'close', listener: () => void): Socket
      on(event: 'error', listener: (err: Error) => void): Socket
      destroy(): void
    }
    interface Server {
      publicKey: Buffer
      listen(keyPair: { publicKey: Buffer; secretKey: Buffer }): Promise<void>
      close(): Promise<void>
    }
  }
  export = HyperDHT
}

declare module 'protomux' {
  interface Message { send(value: unknown): boolean }
  interface Channel {
    open(handshake?: unknown): void
    close(): void
    addMessage(opts: { encoding: unknown; onmessage: (value: never) => void }): Message
    closed: boolean
  }
  class Protomux {
    static from(stream: unknown): Protomux
    createChannel(opts: {
      protocol: string
      id?: Buffer | null
      handshake?: unknown
      onopen?: (handshake: never) => void | Promise<void>
      onclose?: () => void
    }): Channel | null
  }
  export = Protomux
}

declare module 'fuse-native' {
  type Cb = (...args: never[]) => void
  interface FuseOptions {
    force?: boolean
    mkdir?: boolean
    timeout?: number | false
    allowOther?: boolean
    fsname?: string
    subtype?: string
    uid?: number
    gid?: number
    umask?: string
    attrTimeout?: number
    entryTimeout?: number
    maxRead?: number
    debug?: boolean
  }
  class Fuse {
    constructor(mnt: string, ops: Record<string, Cb>, opts?: FuseOptions)
    mount(cb: (err: Error | null) => void): void
    unmount(cb: (err: Error | null) => void): void
    static unmount(mnt: string, cb: (err: Error | null) => void): void
    _fuseOptions(): string
  }
  export = Fuse
}

declare module '@hyperswarm/testnet' {
  interface Testnet {
    bootstrap: Array<{ host: string; port: number }>
    nodes: unknown[]
    destroy(): Promise<void>
  }
  function createTestnet(size?: number, opts?: { host?: string; port?: number }): Promise<Testnet>
  export = createTestnet
}

declare module '@hyperswarm/secret-stream' {
  import { EventEmitter } from 'events'
  import { Duplex } from 'stream'
  interface KeyPair { publicKey: Buffer; secretKey: Buffer }
  class NoiseSecretStream extends EventEmitter {
    constructor(isInitiator: boolean, rawStream: Duplex, opts?: { keyPair?: KeyPair })
    publicKey: Buffer
    remotePublicKey: Buffer
    handshakeHash: Buffer
    isInitiator: boolean
    /** Resolves true once the Noise handshake completed, false if the stream died first. */
    opened: Promise<boolean>
    setKeepAlive(ms: number): void
    setTimeout(ms: number): void
    destroy(err?: Error): void
  }
  export = NoiseSecretStream
}

declare module 'blind-relay' {
  import { EventEmitter } from 'events'
  interface Session extends EventEmitter {}
  export class Server extends EventEmitter {
    constructor(opts: { createStream(opts: Record<string, unknown>): unknown })
    accept(stream: unknown, opts: { id: Buffer }): Session
    close(): Promise<void>
  }
}

declare module 'rache' {
  /** The LRU that hyperbee keeps its decoded keys and nodes in; shared when given to Corestore. */
  class Rache {
    constructor(opts?: { maxSize?: number })
  }
  export = Rache
}

declare module 'fs-native-extensions' {
  /** Punches a hole: the range reads as zeros and its disk space is freed. */
  export function trim(fd: number, offset: number, length: number): Promise<void>
}

declare module 'node-gyp-build' {
  /** The native addon of the package in `dir` (the same instance the package itself loads). */
  function load(dir: string): unknown
  export = load
}

