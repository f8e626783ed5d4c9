// Copies of blocks that were read (cached ones, and this device's own), for re-reads at
// disk speed: one sparse file per blob core, block i at i * SLOT. A warm read is then one
// pread into FUSE's buffer (the kernel's read-ahead works on the file) and one AES-256-CTR
// pass, instead of a storage lookup, an allocation and a decryption of the log's block.
// The log blocks stay as well: they are what peers are served, with their proofs.
// The copies are encrypted with a key drawn at start and held only in memory, so the data
// dir never holds plaintext, even after a crash. Which blocks have a copy is known in
// memory only too, and the files are removed at open and at close, so a crash never
// leaves a block marked whose copy was not wholly written.
// A mirror (FUSE's threads, src/fs/direct-reads.ts) may read the copies too: it learns the
// key, each file and each whole copy, and a copy is unmarked there before its space is freed.
import { promises as fs, read } from 'fs'
import path from 'path'
import { createCipheriv, randomBytes } from 'crypto'
import { trim } from 'fs-native-extensions'

// AES-256-CTR, not libsodium's XChaCha20: AES-NI runs it about three times as fast, and the
// addon that serves warm reads (src/fs/direct-reads.ts) decrypts with the same cipher from
// Node's OpenSSL.
const AES_BLOCK = 16
const MIRROR_DRAIN_MS = 1000

/** A reader of the copies outside this thread, told what it may read. */
export interface CopyMirror {
  /** Starts over with this key and block slot size; slot 0: no copies to read. */
  reset(key: Buffer, slot: number): void
  addFile(core: string, fd: number, nonce: Buffer): void
  /** A block's copy is whole, or is about to go (then returns once no reader uses it). */
  mark(core: string, index: number, present: boolean): void
  /** The blocks it read since the last call. */
  drainRead(): Array<[core: string, index: number]>
}

export class ReadCopies {
  private readonly files = new Map<string, Promise<fs.FileHandle>>()
  private readonly opened = new Map<string, fs.FileHandle>()
  private readonly present = new Map<string, Set<number>>()
  /** Bumped by every drop in a core: a read or write that spans a drop cannot trust its bytes. */
  private readonly drops = new Map<string, number>()
  private readonly key = randomBytes(32)
  private readonly nonces = new Map<string, Buffer>()
  private mirror: CopyMirror | null = null
  private drainTimer: NodeJS.Timeout | null = null
  /** Called for each block the mirror read: the cache's LRU order counts those reads too. */
  onMirrorRead: ((core: string, index: number) => void) | null = null

  constructor(private readonly dir: string, readonly slot: number) {}

  attach(mirror: CopyMirror): void {
    this.mirror = mirror
    mirror.reset(this.key, this.slot)
    for (const [core, file] of this.opened) {
      mirror.addFile(core, file.fd, this.nonce(core))
      for (const index of this.present.get(core) ?? []) mirror.mark(core, index, true)
    }
    this.drainTimer = setInterval(() => this.drainMirror(), MIRROR_DRAIN_MS)
    this.drainTimer.unref()
  }

  private drainMirror(): void {
    for (const [core, index] of this.mirror?.drainRead() ?? []) this.onMirrorRead?.(core, index)
  }

  async open(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true })
    await fs.mkdir(this.dir, { recursive: true })
  }

  /** True if blocks [first, last] of the core all have a copy. */
  covers(core: string, first: number, last: number): boolean {
    const present = this.present.get(core)
    if (!present) return false
    for (let i = first; i <= last; i++) if (!present.has(i)) return false
    return true
  }

  /** Writes a copy of a block; false if it was not kept (a drop in the core ran meanwhile). */
  async write(core: string, index: number, block: Buffer): Promise<boolean> {
    const before = this.dropsIn(core)
    const file = await this.file(core)
    const sealed = this.crypt(core, block, index * this.slot)
    try {
      await file.write(sealed, 0, sealed.length, index * this.slot)
    } catch (err) {
      await trim(file.fd, index * this.slot, this.slot).catch(() => {}) // e.g. a full disk
      throw err
    }
    if (this.dropsIn(core) !== before) {
      await trim(file.fd, index * this.slot, this.slot)
      return false
    }
    let present = this.present.get(core)
    if (!present) this.present.set(core, (present = new Set()))
    present.add(index)
    this.mirror?.mark(core, index, true)
    return true
  }

  /** Reads copied bytes at a position of the core's file into `target`; null if a drop ran
   *  meanwhile (the range may have become a hole), so the caller reads the log instead. */
  async read(core: string, position: number, target: Buffer, length: number): Promise<number | null> {
    const before = this.dropsIn(core)
    const { fd } = await this.file(core)
    // The callback form: a FileHandle's read costs a promise and more per call, and warm
    // reads are bound by this thread.
    const bytesRead = await new Promise<number>((resolve, reject) => {
      read(fd, target, 0, length, position, (err, n) => (err ? reject(err) : resolve(n)))
    })
    if (this.dropsIn(core) !== before) return null
    const bytes = target.subarray(0, bytesRead)
    this.crypt(core, bytes, position).copy(bytes)
    return bytesRead
  }

  private dropsIn(core: string): number {
    return this.drops.get(core) ?? 0
  }

  /** `input` XORed with the core's keystream from byte `position` of its copy file. */
  private crypt(core: string, input: Buffer, position: number): Buffer {
    const cipher = createCipheriv('aes-256-ctr', this.key, counterBlock(this.nonce(core), position))
    const skip = position % AES_BLOCK
    if (skip) cipher.update(Buffer.alloc(skip)) // a read that starts inside a counter block
    return cipher.update(input)
  }

  /** The counter block of the copy file's byte 0, drawn at random per core. */
  private nonce(core: string): Buffer {
    let nonce = this.nonces.get(core)
    if (!nonce) this.nonces.set(core, (nonce = randomBytes(AES_BLOCK)))
    return nonce
  }

  /** Forgets a block's copy and frees its space. */
  async drop(core: string, index: number): Promise<void> {
    if (!this.present.get(core)?.delete(index)) return
    this.mirror?.mark(core, index, false)
    this.drops.set(core, this.dropsIn(core) + 1)
    const file = await this.file(core)
    await trim(file.fd, index * this.slot, this.slot)
  }

  async close(): Promise<void> {
    if (this.drainTimer) clearInterval(this.drainTimer)
    this.drainMirror()
    this.mirror?.reset(this.key, 0)
    this.mirror = null
    const files = [...this.files.values()]
    this.files.clear()
    this.opened.clear()
    this.present.clear()
    for (const file of files) await (await file).close()
    await fs.rm(this.dir, { recursive: true, force: true })
  }

  private file(core: string): Promise<fs.FileHandle> {
    let file = this.files.get(core)
    if (!file) {
      file = fs.open(path.join(this.dir, core), 'w+', 0o600).then((handle) => {
        this.opened.set(core, handle)
        this.mirror?.addFile(core, handle.fd, this.nonce(core))
        return handle
      })
      this.files.set(core, file)
    }
    return file
  }
}

/** The counter block at byte `position`: `nonce` + position / 16, as a 128-bit big-endian
 *  number (the addon computes the same). */
function counterBlock(nonce: Buffer, position: number): Buffer {
  const block = Buffer.from(nonce)
  let add = Math.floor(position / AES_BLOCK)
  let carry = 0
  for (let i = AES_BLOCK - 1; i >= 0; i--) {
    const sum = block[i] + (add % 256) + carry
    block[i] = sum & 0xff
    carry = sum >> 8
    add = Math.floor(add / 256)
  }
  return block
}
