// Secrets name a folder and carry the capability to use it, like Resilio Sync's keys.
// One string with a kind prefix, base32 payload and a 4-byte checksum so a typo is
// caught before any network traffic.
import crypto from 'hypercore-crypto'
import sodium from 'sodium-universal'

export type SecretKind = 'readWrite' | 'readOnly' | 'encrypted'

const PREFIX: Record<SecretKind, string> = { readWrite: 'tsrw-', readOnly: 'tsro-', encrypted: 'tsen-' }
const PAYLOAD_BYTES: Record<SecretKind, number> = { readWrite: 32, readOnly: 64, encrypted: 32 }
const CHECKSUM_BYTES = 4
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'

export class SecretError extends Error {}

export interface FolderKeys {
  kind: SecretKind
  /** Signs member certificates; only derivable from the read-write secret. */
  folderKeyPair: { publicKey: Buffer; secretKey: Buffer } | null
  folderPublicKey: Buffer
  /** Encrypts every core of the folder; absent for the encrypted (untrusted) kind. */
  contentKey: Buffer | null
  /** Swarm topic and short id are derived from the public key, so every kind finds peers. */
  topic: Buffer
  folderId: string
  /** Proves knowledge of the folder on a connection without revealing anything usable. */
  capabilityKey: Buffer
  readWrite: string | null
  readOnly: string | null
  encrypted: string
}

export function newReadWriteSecret(): string {
  const seed = Buffer.alloc(32)
  sodium.randombytes_buf(seed)
  return encode('readWrite', seed)
}

export function parseSecret(text: string): FolderKeys {
  const trimmed = text.trim()
  const kind = (Object.keys(PREFIX) as SecretKind[]).find((k) => trimmed.startsWith(PREFIX[k]))
  if (!kind) throw new SecretError('not a tsyncfs secret (it must start with tsrw-, tsro- or tsen-)')
  const body = trimmed.slice(PREFIX[kind].length)
  const raw = base32Decode(body)
  if (raw === null || raw.length !== PAYLOAD_BYTES[kind] + CHECKSUM_BYTES || base32Encode(raw) !== body.toLowerCase()) {
    throw new SecretError('malformed secret: wrong length or characters (was it cut short?)')
  }
  const payload = raw.subarray(0, PAYLOAD_BYTES[kind])
  if (!checksum(kind, payload).equals(raw.subarray(PAYLOAD_BYTES[kind]))) {
    throw new SecretError('malformed secret: checksum mismatch (is there a typo?)')
  }
  if (kind === 'readWrite') return fromReadWrite(payload)
  if (kind === 'readOnly') return fromPublic(kind, payload.subarray(0, 32), Buffer.from(payload.subarray(32)))
  return fromPublic(kind, Buffer.from(payload), null)
}

function fromReadWrite(seed: Buffer): FolderKeys {
  const folderKeyPair = crypto.keyPair(keyedHash(seed, 'tsyncfs folder key pair'))
  const contentKey = keyedHash(seed, 'tsyncfs content key')
  const keys = fromPublic('readWrite', folderKeyPair.publicKey, contentKey)
  return { ...keys, folderKeyPair, readWrite: encode('readWrite', seed) }
}

function fromPublic(kind: SecretKind, folderPublicKey: Buffer, contentKey: Buffer | null): FolderKeys {
  return {
    kind,
    folderKeyPair: null,
    folderPublicKey,
    contentKey,
    topic: keyedHash(folderPublicKey, 'tsyncfs topic'),
    folderId: base32Encode(keyedHash(folderPublicKey, 'tsyncfs folder id').subarray(0, 10)),
    capabilityKey: keyedHash(folderPublicKey, 'tsyncfs capability'),
    readWrite: null,
    readOnly: contentKey ? encode('readOnly', Buffer.concat([folderPublicKey, contentKey])) : null,
    encrypted: encode('encrypted', folderPublicKey)
  }
}

export function keyedHash(key: Buffer, context: string, input: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(32)
  sodium.crypto_generichash(out, Buffer.concat([Buffer.from(context), input]), key)
  return out
}

function encode(kind: SecretKind, payload: Buffer): string {
  return PREFIX[kind] + base32Encode(Buffer.concat([payload, checksum(kind, payload)]))
}

function checksum(kind: SecretKind, payload: Buffer): Buffer {
  return crypto.hash(Buffer.concat([Buffer.from(PREFIX[kind]), payload])).subarray(0, CHECKSUM_BYTES)
}

export function base32Encode(buf: Buffer): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of buf) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31]
  return out
}

function base32Decode(text: string): Buffer | null {
  const bytes: number[] = []
  let bits = 0
  let value = 0
  for (const ch of text.toLowerCase()) {
    const index = ALPHABET.indexOf(ch)
    if (index === -1) return null
    value = ((value << 5) | index) & 0xffff
    bits += 5
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 255)
      bits -= 8
    }
  }
  return Buffer.from(bytes)
}
