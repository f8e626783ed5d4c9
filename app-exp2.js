const Corestore = require('corestore')
const Hypercore = require('hypercore')
const crypto = require('crypto')
async function main () {
  const dir = '/tmp/exp/cs-read'
  const fresh = !require('fs').existsSync(dir)
  const store = new Corestore(Hypercore.defaultStorage(dir, { writeBufferSize: 8 * 1048576 }))
  const core = store.get({ name: 'x', encryption: { key: Buffer.alloc(32, 7) } })
  await core.ready()
  if (fresh) { for (let i = 0; i < 1024; i += 16) await core.append(Array.from({ length: 16 }, () => crypto.randomBytes(256 * 1024))) ; await store.close(); console.log('written'); return }
  const par = Number(process.argv[2] || 1)
  const t0 = Date.now()
  for (let i = 0; i < 1024; i += par) await Promise.all(Array.from({ length: Math.min(par, 1024 - i) }, (_, j) => core.get(i + j)))
  const s = (Date.now() - t0) / 1000
  console.log(`par=${par}: ${(256 / s).toFixed(0)} MiB/s`)
  await store.close()
}
main()
