// A seed's copy of a folder: every member's cores, downloaded whole and served, without
// reading them. It needs only the folder public key (to check certificates), so it works
// with the encrypted secret on a box nobody trusts: blocks stay ciphertext on its disk.
import { EventEmitter, once } from 'events'
import Corestore from 'corestore'
import Hypercore from 'hypercore'
import Hyperdrive from 'hyperdrive'
import { FolderKeys } from '../secrets'
import { Certificate, isValidCertificate, loadMembers, saveMembers } from '../model/certificates'

export class Replica extends EventEmitter {
  private readonly certificates = new Map<string, Certificate>()
  private readonly cores: Hypercore[] = []

  constructor(private readonly store: Corestore, private readonly keys: FolderKeys, private readonly dir: string) {
    super()
  }

  async open(): Promise<void> {
    for (const cert of await loadMembers(this.dir)) await this.addCertificate(cert)
  }

  allCertificates(): Certificate[] {
    return [...this.certificates.values()]
  }

  async addCertificate(cert: Certificate): Promise<boolean> {
    if (!isValidCertificate(this.keys.folderPublicKey, cert)) return false
    const hex = cert.driveKey.toString('hex')
    if (this.certificates.has(hex)) return false
    this.certificates.set(hex, cert)
    await saveMembers(this.dir, this.allCertificates())
    this.mirror(cert.driveKey).catch((err) => this.emit('warning', err))
    this.emit('member', cert)
    return true
  }

  /** Downloads a member's metadata core and, once its manifest is known, its content core. */
  private async mirror(driveKey: Buffer): Promise<void> {
    const db = this.keep(this.store.get({ key: driveKey }))
    await db.ready()
    // The manifest (which names the content core) arrives with the first proof from a peer.
    while (!db.manifest) await once(db, 'append')
    const contentKey = Hyperdrive.getContentKey(db, driveKey)
    if (contentKey) this.keep(this.store.get({ key: contentKey }))
  }

  private keep(core: Hypercore): Hypercore {
    this.cores.push(core)
    core.download({ start: 0, end: -1 })
    return core
  }

  /** Blocks held locally, over all cores: what a seed can serve. */
  stats(): { cores: number; blocks: number; length: number } {
    let blocks = 0
    let length = 0
    for (const core of this.cores) {
      blocks += core.contiguousLength
      length += core.length
    }
    return { cores: this.cores.length, blocks, length }
  }

  async close(): Promise<void> {
    await Promise.all(this.cores.map((c) => c.close().catch(() => {})))
  }
}
