// `tsyncfs seed`: no mount, a full replica of the folder kept and served, so the folder
// stays available while the devices sleep. Works with every kind of secret.
import { FolderKeys } from '../secrets'
import { Replica } from '../swarm/replica'
import { Discovery, FolderNetwork, HostPort } from '../swarm/network'
import { Logger, lockFolderDir, prepareFolderDir } from './daemon'
import { openStore } from './store'
import { useFrugalHeap } from './heap'

export interface SeedConfig {
  dataDir: string
  bootstrap: HostPort[] | null
  bind: string | null
  discovery: Discovery
  relay: boolean // also relay for the folder's devices that cannot holepunch
}

export async function runSeed(keys: FolderKeys, config: SeedConfig, log: Logger): Promise<() => Promise<void>> {
  const dir = await prepareFolderDir(config.dataDir, keys)
  const unlock = await lockFolderDir(dir, keys.folderId)
  useFrugalHeap()
  const store = openStore(dir)
  const replica = new Replica(store, keys, dir)
  replica.on('warning', (err: Error) => log(`warning: ${err.message}`))
  replica.on('member', () => log(`seeding ${replica.allCertificates().length} member(s)`))
  await replica.open()
  const network = new FolderNetwork(keys, store, replica, { bootstrap: config.bootstrap, bind: config.bind, ...config.discovery, relay: config.relay }, log)
  await network.start()
  return async () => {
    await network.stop().catch(() => {})
    await replica.close()
    await store.close().catch(() => {})
    await unlock()
  }
}
