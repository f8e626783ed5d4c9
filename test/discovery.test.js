'use strict'
// Finding peers (issue 7): every device on a host of its own (a network namespace made
// here, with no route anywhere else, so the public DHT is unreachable), found by known
// hosts, the LAN, or a private bootstrap node.
const test = require('brittle')
const fs = require('fs').promises
const path = require('path')
const { Device, makeLan, spawnIn, newSecret, waitFor, exec, sh, BIN, ROOT, RUN_DIR } = require('./helpers')

const NO_LAN = { TSYNCFS_LAN: '0' }
const LAN = { TSYNCFS_LAN: '1' }

function device (t, name, host, { bootstrap = null, env = NO_LAN } = {}) {
  const d = new Device(t, bootstrap, name, host)
  Object.assign(d.env, env)
  return d
}

/** The verified peers a device's status shows. */
async function verifiedPeers (d) {
  return (await d.status()).peers.filter((p) => p.verified)
}

async function waitForPeer (d, via, timeout = 30000) {
  return waitFor(async () => (await verifiedPeers(d)).find((p) => p.via === via), { timeout, message: `${d.name} to have a verified ${via} peer` })
}

/** UDP sockets the daemon of `d` holds: none means no DHT node (nor LAN socket) exists. */
async function udpSockets (d) {
  const res = await exec('nsenter', [`--net=/run/netns/${d.host.ns}`, 'ss', '-H', '-uanp'])
  return res.stdout.split('\n').filter((l) => l.includes(`pid=${d.pid()},`))
}

function count (text, needle) {
  return text.split(needle).length - 1
}

test('known hosts: --no-dht with --peer and --listen, both directions, reconnecting after restarts', { timeout: 240000 }, async (t) => {
  const [h0, h1] = await makeLan(t, 2)
  const secret = await newSecret()
  const a = device(t, 'A', h0)
  const b = device(t, 'B', h1)
  await b.mount(secret, ['--no-dht', '--listen', '7070'])
  await a.mount(secret, ['--no-dht', '--peer', `${h1.ip}:7070`])

  const seenByA = await waitForPeer(a, 'direct')
  t.is(seenByA.address, `${h1.ip}:7070`, 'A dialed B at its known address')
  const seenByB = await waitForPeer(b, 'direct')
  t.ok(seenByB.address.startsWith(`${h0.ip}:`), 'B accepted A on its listener')
  t.alike(await udpSockets(a), [], 'no UDP socket on A: no DHT node exists')
  t.alike(await udpSockets(b), [], 'no UDP socket on B: no DHT node exists')
  const status = await a.cli(['status', a.mnt])
  t.ok(status.stdout.includes(`direct ${h1.ip}:7070`), 'status text shows how the peer was found and where')

  await fs.writeFile(a.p('from-a.txt'), 'A to B')
  await b.waitForContent('from-a.txt', 'A to B')
  await fs.writeFile(b.p('from-b.txt'), 'B to A')
  await a.waitForContent('from-b.txt', 'B to A')
  t.pass('files travel both ways')

  // The listening side restarts: the dialer comes back by itself.
  await b.stop()
  await fs.writeFile(a.p('while-b-was-down.txt'), 'later')
  await b.mount(secret, ['--no-dht', '--listen', '7070'])
  await b.waitForContent('while-b-was-down.txt', 'later', 60000)
  t.pass('A reconnects after B restarted')

  // The dialing side restarts.
  await a.stop()
  await fs.writeFile(b.p('while-a-was-down.txt'), 'later too')
  await a.mount(secret, ['--no-dht', '--peer', `${h1.ip}:7070`])
  await a.waitForContent('while-a-was-down.txt', 'later too', 60000)
  t.pass('A reconnects after its own restart')

  // Both sides dial each other: one connection remains.
  const c = device(t, 'C', h0)
  await b.stop()
  await b.mount(secret, ['--no-dht', '--listen', '7070', '--peer', `${h0.ip}:7071`])
  await c.mount(secret, ['--no-dht', '--listen', '7071', '--peer', `${h1.ip}:7070`])
  await waitFor(async () => (await verifiedPeers(c)).length >= 1, { message: 'C and B to connect' })
  await new Promise((resolve) => setTimeout(resolve, 4000))
  // C knows only B; B knows C and is dialed by A.
  t.is((await c.status()).peers.length, 1, 'one connection between B and C, although both dial')
  t.is((await b.status()).peers.length, 2, 'B holds one connection to each of A and C')
  await c.waitForContent('from-a.txt', 'A to B')
})

test('bad discovery options fail with one line and exit code 2', { timeout: 60000 }, async (t) => {
  const secret = await newSecret()
  const d = new Device(t, '127.0.0.1:9', 'E')
  const cases = [
    [['--peer', 'nonsense'], /bad --peer: bad address "nonsense"/],
    [['--listen', '99999'], /bad --listen "99999"/],
    [['--listen', 'abc'], /bad --listen "abc"/],
    [['--no-dht', '--no-lan'], /give --peer or --listen/]
  ]
  for (const [args, message] of cases) {
    const res = await d.cli(['mount', secret, d.mnt, '--data-dir', d.dataDir, ...args])
    t.is(res.code, 2, `${args.join(' ')}: exit code 2`)
    t.ok(message.test(res.stderr) && res.stderr.trim().split('\n').length === 1, `${args.join(' ')}: ${res.stderr.trim()}`)
  }
  const helper = await d.cli([secret, d.mnt, '-o', `data_dir=${d.dataDir},no_dht,listen=99999`])
  t.is(helper.code, 2, '-o no_dht,listen=99999: exit code 2')
  t.ok(/bad --listen "99999"/.test(helper.stderr), '-o options are checked the same way')
  const seed = await d.cli(['seed', secret, '--data-dir', d.dataDir, '--peer', 'host:'])
  t.is(seed.code, 2, 'seed checks --peer too')
})
