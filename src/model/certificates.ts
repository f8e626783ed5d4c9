// Membership: a member's drive key signed with the folder key pair. Entries of drives
// without a valid certificate are never read, so holding a read-only secret is not
// enough to write.
import crypto from 'hypercore-crypto'
import { promises as fs } from 'fs'
import path from 'path'
import { saveJson } from '../json-file'

export interface Certificate {
  driveKey: Buffer
  signature: Buffer
}

function signable(folderPublicKey: Buffer, driveKey: Buffer): Buffer {
  return Buffer.concat([Buffer.from('tsyncfs member certificate\n'), folderPublicKey, driveKey])
}

export function certify(folderKeyPair: { publicKey: Buffer; secretKey: Buffer }, driveKey: Buffer): Certificate {
  return { driveKey, signature: crypto.sign(signable(folderKeyPair.publicKey, driveKey), folderKeyPair.secretKey) }
}

export function isValidCertificate(folderPublicKey: Buffer, cert: Certificate): boolean {
  if (cert.driveKey.length !== 32 || cert.signature.length !== 64) return false
  return crypto.verify(signable(folderPublicKey, cert.driveKey), cert.signature, folderPublicKey)
}

export interface CertificateJson { driveKey: string; signature: string }

export function toJson(cert: Certificate): CertificateJson {
  return { driveKey: cert.driveKey.toString('hex'), signature: cert.signature.toString('hex') }
}

export function fromJson(json: unknown): Certificate | null {
  const j = json as Partial<CertificateJson> | null
  if (!j || typeof j.driveKey !== 'string' || typeof j.signature !== 'string') return null
  return { driveKey: Buffer.from(j.driveKey, 'hex'), signature: Buffer.from(j.signature, 'hex') }
}

/** The certificates a folder's state dir keeps (members.json), for a mount or a seed;
 *  none if the file is missing or unreadable. */
export async function loadMembers(dir: string): Promise<Certificate[]> {
  try {
    const list = JSON.parse(await fs.readFile(membersFile(dir), 'utf8')) as unknown[]
    return list.map(fromJson).filter((c): c is Certificate => c !== null)
  } catch {
    return []
  }
}

export function saveMembers(dir: string, certs: Certificate[]): Promise<void> {
  return saveJson(membersFile(dir), certs.map(toJson))
}

function membersFile(dir: string): string {
  return path.join(dir, 'members.json')
}
