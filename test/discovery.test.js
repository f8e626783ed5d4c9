'use strict'
// Finding peers (issue 7): every device on a host of its own (a network namespace made
// here, with no route anywhere else, so the public DHT is unreachable), found by known
// hosts, the LAN, or a private bootstrap node.
const test = require('brittle')
const fs = require('fs').promises
const path = require('path')
const dgram = require('dgram')
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

test('a config file holds discovery defaults: no DHT and known hosts from the file; flags and -o options win over it', { timeout: 120000 }, async (t) => {
  const [h0, h1] = await makeLan(t, 2)
  const secret = await newSecret()
  const a = device(t, 'A', h0)
  const b = device(t, 'B', h1)
  // B reads the default path, $XDG_CONFIG_HOME/tsyncfs/config.json.
  b.env.XDG_CONFIG_HOME = path.join(b.dir, 'xdg')
  await fs.mkdir(path.join(b.env.XDG_CONFIG_HOME, 'tsyncfs'), { recursive: true })
  await fs.writeFile(path.join(b.env.XDG_CONFIG_HOME, 'tsyncfs', 'config.json'), JSON.stringify({ dht: false, listen: 7070 }))
  await b.mount(secret)
  // A names its file with -o config=, in the mount.fuse form, and overrides its listen port.
  const fileA = path.join(a.dir, 'tsyncfs.json')
  await fs.writeFile(fileA, JSON.stringify({ dht: false, peers: [`${h1.ip}:7070`], listen: 7000 }))
  const res = await a.cli([secret, a.mnt, '-o', `data_dir=${a.dataDir},config=${fileA},listen=7071`])
  t.is(res.code, 0, `A mounted (${res.stderr.trim()})`)

  const peer = await waitForPeer(a, 'direct')
  t.is(peer.address, `${h1.ip}:7070`, 'A dialed the known host of its file, on the port of B\'s file')
  t.alike(await udpSockets(a), [], 'no UDP socket on A: "dht": false in its file')
  t.alike(await udpSockets(b), [], 'no UDP socket on B: "dht": false in the default file')
  t.ok(a.log().includes('listening for direct connections on port 7071'), 'the -o listen= option beat the file\'s port')
  await fs.writeFile(a.p('configured.txt'), 'from a config file')
  await b.waitForContent('configured.txt', 'from a config file')
  t.pass('a file travels between them')
})

test('a bad config file fails with one line naming the file and key, exit code 2', { timeout: 60000 }, async (t) => {
  const secret = await newSecret()
  const d = new Device(t, '127.0.0.1:9', 'F')
  const file = path.join(d.dir, 'config.json')
  const cases = [
    [{ dht: false, peerz: ['a:1'] }, /config\.json: unknown key "peerz"/],
    [{ listen: 'abc' }, /config\.json: bad "listen": expected a TCP port/],
    [{ lan: 'no' }, /config\.json: bad "lan": expected true or false/],
    [{ peers: ['nonsense'] }, /config\.json: bad "peers": bad address "nonsense"/],
    ['{"dht": false,', /config\.json: not valid JSON/]
  ]
  for (const [content, message] of cases) {
    await fs.writeFile(file, typeof content === 'string' ? content : JSON.stringify(content))
    const res = await d.cli(['mount', secret, d.mnt, '--data-dir', d.dataDir, '--config', file])
    t.is(res.code, 2, `${JSON.stringify(content)}: exit code 2`)
    t.ok(message.test(res.stderr) && res.stderr.includes(file) && res.stderr.trim().split('\n').length === 1, res.stderr.trim())
  }
  const missing = await d.cli(['seed', secret, '--data-dir', d.dataDir, '--config', path.join(d.dir, 'none.json')])
  t.is(missing.code, 2, 'a --config file that does not exist: exit code 2')
  t.ok(/none\.json: cannot read the config file \(ENOENT\)/.test(missing.stderr), missing.stderr.trim())
})

test('LAN discovery finds devices of the same folder with no DHT, and announces nothing an outsider can use', { timeout: 180000 }, async (t) => {
  const [h0, h1, h2] = await makeLan(t, 3)
  const secret = await newSecret()
  const otherSecret = await newSecret()
  const sniffer = spawnIn(t, h2, process.execPath, [path.join(__dirname, 'fixtures', 'lan-sniffer.js'), h2.ip])
  await waitFor(() => sniffer.output.includes('listening'), { message: 'the sniffer' })
  const a = device(t, 'A', h0, { env: LAN })
  const b = device(t, 'B', h1, { env: LAN })
  const c = device(t, 'C', h2, { env: LAN })
  await a.mount(secret, ['--no-dht'])
  await b.mount(secret, ['--no-dht'])
  await c.mount(otherSecret, ['--no-dht'])

  const peerOfA = await waitForPeer(a, 'lan')
  const peerOfB = await waitForPeer(b, 'lan')
  t.ok([peerOfA.address, peerOfB.address].some((x) => x.startsWith(`${h0.ip}:`) || x.startsWith(`${h1.ip}:`)), 'A and B found each other on the LAN')
  t.ok((await udpSockets(a)).every((l) => l.includes(':49738')), 'A holds no UDP socket but the LAN one: no DHT node')
  await fs.writeFile(a.p('lan.txt'), 'over the LAN')
  await b.waitForContent('lan.txt', 'over the LAN')
  t.pass('a file travels over the connection found on the LAN')
  t.is((await c.status()).peers.length, 0, 'a device of another folder on the same LAN connects to nobody')

  await waitFor(() => [h0, h1, h2].every((h) => sniffer.output.includes(`${h.ip} `)), { message: 'announcements from every host' })
  const packets = sniffer.output.split('\n').filter((l) => l.startsWith('10.'))
  const { parseSecret } = require(path.join(ROOT, 'dist', 'secrets'))
  const keys = parseSecret(secret)
  const secrets = JSON.parse((await a.cli(['secrets', secret, '--json'])).stdout)
  const revealing = [keys.topic, keys.folderPublicKey, keys.capabilityKey, keys.folderId && Buffer.from(keys.folderId),
    Buffer.from(secret), Buffer.from(secrets.readOnly), Buffer.from(secrets.encrypted)].filter(Boolean).map((b) => b.toString('hex'))
  t.ok(packets.every((p) => revealing.every((r) => !p.includes(r))), 'no announcement contains the topic, keys, folder id or a secret')
  const tagOf = (host) => packets.find((p) => p.startsWith(`${host.ip} `)).split(' ')[1].slice(16, 80)
  t.is(tagOf(h0), tagOf(h1), 'devices of one folder announce the same tag')
  t.not(tagOf(h0), tagOf(h2), 'another folder announces another tag')
})

/** A private bootstrap node on a host of its own, and devices A and B of one folder on two more. */
async function privateDhtPair (t) {
  const [h0, h1, h2] = await makeLan(t, 3)
  const node = spawnIn(t, h0, process.execPath, [BIN, 'bootstrap', '--host', h0.ip, '--port', '49737'])
  await waitFor(() => node.output.includes('listening'), { message: 'the bootstrap node' })
  const bootstrap = `${h0.ip}:49737`
  const secret = await newSecret()
  const a = device(t, 'A', h1, { bootstrap })
  const b = device(t, 'B', h2, { bootstrap })
  await a.mount(secret)
  await b.mount(secret)
  return { h0, h1, h2, a, b }
}

// Devices off loopback holepunch, and that needs a usable routing table: a bootstrap node
// with a random id (hyperdht/testnet's first) left them 2 nodes, too few to classify their
// NAT, and connections came up half-open in about half the runs (src/swarm/bootstrap-nodes.ts).
test('a private bootstrap node (tsyncfs bootstrap) serves devices cut off from the public DHT', { timeout: 180000 }, async (t) => {
  const { h2, a, b } = await privateDhtPair(t)
  // Found on the DHT, then connected over TCP at the port B told: the TCP connection
  // replaces the DHT one, on both sides.
  const peer = await waitForPeer(a, 'dht-tcp', 90000)
  t.ok(peer.address.startsWith(h2.ip), `A found B through the private DHT and reached it over TCP (${peer.address})`)
  await waitForPeer(b, 'dht-tcp', 30000)
  const only = await waitFor(async () => { const { peers } = await a.status(); return peers.length === 1 && peers }, { timeout: 20000, message: 'the DHT connection to be retired' })
  t.is(only[0].via, 'dht-tcp', 'A keeps one connection to B: the TCP one')
  await fs.writeFile(a.p('private.txt'), 'through a private DHT')
  await b.waitForContent('private.txt', 'through a private DHT', 60000)
  t.pass('a file travels between them')
})

// Hyperswarm looks a topic up again only every 10 minutes. B starts while its DHT is down,
// so its announce goes nowhere; A starts once the DHT is up and finds no one. Alone, each
// looks again within seconds (src/swarm/network.ts); before, they stayed apart for 10 minutes.
test('devices that missed each other on the DHT look again while alone, within seconds', { timeout: 150000 }, async (t) => {
  const port = await freeUdpPort()
  const bootstrap = `127.0.0.1:${port}`
  const secret = await newSecret()
  const b = new Device(t, bootstrap, 'B')
  await b.mount(secret)
  await new Promise((resolve) => setTimeout(resolve, 20000)) // B's first lookup and announce fail meanwhile
  const node = spawnIn(t, null, process.execPath, [BIN, 'bootstrap', '--host', '127.0.0.1', '--port', String(port)])
  await waitFor(() => node.output.includes('listening'), { message: 'the bootstrap node' })
  const a = new Device(t, bootstrap, 'A')
  await a.mount(secret)
  const started = Date.now()
  await fs.writeFile(a.p('late.txt'), 'found after all')
  await b.waitForContent('late.txt', 'found after all', 60000).catch((err) => t.fail(`${err.message}\nA: ${a.log()}\nB: ${b.log()}`))
  t.ok(Date.now() - started < 60000, `B has A's file ${((Date.now() - started) / 1000).toFixed(1)} s after A mounted`)
})

/** A UDP port on loopback that nothing uses right now. */
function freeUdpPort () {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4')
    socket.on('error', reject)
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address()
      socket.close(() => resolve(port))
    })
  })
}

test('a DHT peer moved to TCP falls back to the DHT when TCP is cut, and syncs on', { timeout: 240000 }, async (t) => {
  const { h0, h2, a, b } = await privateDhtPair(t)
  await waitForPeer(a, 'dht-tcp', 90000)
  t.pass('A reached B over TCP')
  // B's host now drops every TCP packet it sends to the LAN (policy routing on the IP
  // protocol): the connection goes silent, UDX still passes.
  const subnet = h0.ip.replace(/\.\d+$/, '.0/24')
  const cut = await sh(`ip -n ${h2.ns} route add blackhole ${subnet} table 100 && ip -n ${h2.ns} rule add ipproto tcp to ${subnet} lookup 100 pref 10`)
  t.is(cut.code, 0, `TCP from B cut (${cut.stderr.trim()})`)
  // The silent connection times out (20 s); hyperswarm had banned B while the TCP
  // connection stood, so only the lifted ban brings B back over the DHT.
  const back = await waitForPeer(a, 'dht', 120000).catch((err) => {
    t.fail(`${err.message}\nA: ${a.log()}\nB: ${b.log()}`)
    return null
  })
  if (!back) return
  t.ok(back.address.startsWith(h2.ip), `A reaches B over the DHT again (${back.address})`)
  await fs.writeFile(a.p('after-cut.txt'), 'over the DHT again')
  await b.waitForContent('after-cut.txt', 'over the DHT again', 60000)
  t.pass('a file written after the cut reaches B')
})

test('a peer failing the folder proof is dropped once; an unreachable address is retried with back-off', { timeout: 180000 }, async (t) => {
  const [h0, h1] = await makeLan(t, 2)
  const x = device(t, 'X', h0)
  await x.mount(await newSecret(), ['--no-dht', '--listen', '7070']) // a device of another folder
  const closer = spawnIn(t, h0, process.execPath, [path.join(__dirname, 'fixtures', 'tcp-closer.js'), '7071'])
  await waitFor(() => closer.output.includes('listening'), { message: 'the closing port' })
  const a = device(t, 'A', h1)
  await a.mount(await newSecret(), ['--no-dht', '--peer', `${h0.ip}:7070,${h0.ip}:7071`, '--listen', '7072'])
  const started = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 40000))
  const seconds = (Date.now() - started) / 1000

  const tries = count(closer.output, 'connection')
  // 1 s doubling: tries at 0, 1, 3, 7, 15, 31 s; a fixed 1 s retry would make about 40.
  t.ok(tries >= 3 && tries <= 8, `the hanging-up address was tried ${tries} times in ${seconds.toFixed(0)} s`)
  const logA = a.log()
  t.is(count(logA, `${h0.ip}:7071 unreachable`), 1, 'its failure is logged once, not per try')
  t.is(count(logA, `connected (direct) from ${h0.ip}:7070`), 1, 'the other folder\'s device was connected to once')
  t.is(count(logA, 'dropped and not retried'), 1, 'and dropped, and not dialed again')
  t.is(count(x.log(), 'connected (direct)'), 1, 'the other side saw one connection')
  t.is((await a.status()).peers.length, 0, 'A has no peers')
})

test('LAN tags rotate and differ per folder; -o peer= options add up', async (t) => {
  const { lanTag } = require(path.join(ROOT, 'dist', 'swarm', 'lan'))
  const { parseMountOptions } = require(path.join(ROOT, 'dist', 'cli', 'mount-options'))
  const topic = Buffer.alloc(32, 1)
  t.is(lanTag(topic, 7).length, 32, 'a tag is 32 bytes')
  t.alike(lanTag(topic, 7), lanTag(topic, 7), 'the same folder and window give the same tag')
  t.unlike(lanTag(topic, 7), lanTag(topic, 8), 'the next window gives another tag')
  t.unlike(lanTag(topic, 7), lanTag(Buffer.alloc(32, 2), 7), 'another folder gives another tag')
  t.alike(parseMountOptions('no_dht,no_lan,peer=a:1,peer=b:2,listen=7070,force_relay'),
    { 'no-dht': true, 'no-lan': true, peer: 'a:1,b:2', listen: '7070', 'force-relay': true }, 'mount options map to flags')
})

test('config file: flags over environment over the file, and only the options a command has', async (t) => {
  const { withConfigFile, defaultConfigPath } = require(path.join(ROOT, 'dist', 'cli', 'config-file'))
  const file = path.join(RUN_DIR, `${process.pid}-layers.json`)
  await fs.mkdir(RUN_DIR, { recursive: true })
  await fs.writeFile(file, JSON.stringify({ dht: false, lan: true, bootstrap: ['h:1', 'h:2'], relay: true, 'cache-size': '2G' }))
  const spec = { config: 1, dht: 1, 'no-dht': 1, lan: 1, 'no-lan': 1, bootstrap: 1, 'cache-size': 1 }
  t.alike(await withConfigFile({ config: file }, spec, {}), { config: file, 'no-dht': true, lan: true, bootstrap: 'h:1,h:2', 'cache-size': '2G' }, 'the file alone; "relay" is not an option of this command')
  t.alike(await withConfigFile({ config: file, dht: true }, spec, { TSYNCFS_LAN: '0', TSYNCFS_BOOTSTRAP: 'e:3' }),
    { config: file, dht: true, 'no-lan': true, bootstrap: 'e:3', 'cache-size': '2G' }, '--dht beats "dht": false, the environment beats the file')
  t.alike(await withConfigFile({}, spec, { XDG_CONFIG_HOME: path.join(RUN_DIR, 'no-such-dir') }), {}, 'no file at the default path: no defaults')
  t.is(defaultConfigPath({ HOME: '/home/me' }), '/home/me/.config/tsyncfs/config.json', 'default: ~/.config/tsyncfs/config.json')
  t.is(defaultConfigPath({ HOME: '/home/me', XDG_CONFIG_HOME: '/x' }), '/x/tsyncfs/config.json', '$XDG_CONFIG_HOME is honoured')
})

test('relayed connections: devices that cannot reach each other connect through a seed --relay', { timeout: 180000 }, async (t) => {
  const [r, hostA, hostB] = await makeLan(t, 3)
  // No way between A and B, while both reach R.
  if (process.env.RELAY_BLOCK !== '0') {
    await sh(`ip -n ${hostA.ns} route add blackhole ${hostB.ip}/32 && ip -n ${hostB.ns} route add blackhole ${hostA.ip}/32`)
  }
  const node = spawnIn(t, r, process.execPath, [BIN, 'bootstrap', '--host', r.ip, '--port', '49737'])
  await waitFor(() => node.output.includes('listening'), { message: 'the bootstrap node' })
  const bootstrap = `${r.ip}:49737`
  const secret = await newSecret()
  // The relay holds only the encrypted secret: it can store and forward, never read.
  const { encrypted } = JSON.parse((await exec(process.execPath, [BIN, 'secrets', secret, '--json'])).stdout)
  t.ok(encrypted.startsWith('tsen-'), 'the relay runs with the encrypted secret')
  const seedDir = path.join(RUN_DIR, `${process.pid}-relay-seed`)
  const seed = spawnIn(t, r, process.execPath, [BIN, 'seed', encrypted, '--data-dir', seedDir, '--relay', '--bootstrap', bootstrap],
    { env: { ...process.env, TSYNCFS_BIND: '', TSYNCFS_LAN: '0' } })
  await waitFor(() => seed.output.includes('relaying for'), { timeout: 60000, message: 'the relay' })

  const a = device(t, 'A', hostA, { bootstrap })
  const b = device(t, 'B', hostB, { bootstrap })
  await a.mount(secret, ['--force-relay'])
  await b.mount(secret, ['--force-relay'])
  const route = await sh(`nsenter --net=/run/netns/${hostA.ns} ip route get ${hostB.ip}`)
  t.not(route.code, 0, `A has no route to B (${route.stderr.trim()})`)

  // A's only possible peers are the seed and B: two verified peers means B is one of them,
  // reached although there is no route between them.
  // A failed wait ends the test with its logs, not the process: the teardown must run.
  const peers = await waitFor(async () => {
    const list = await verifiedPeers(a)
    return list.length >= 2 && list
  }, { timeout: 60000, message: 'A to connect to the seed and to B' }).catch((err) => {
    t.fail(`${err.message}\nA: ${a.log()}\nB: ${b.log()}\nseed: ${seed.output}`)
    return null
  })
  if (!peers) return
  t.ok(peers.every((p) => p.via === 'relay' && p.address.startsWith(`${r.ip}:`)), `status shows connections from the relay's host as relay (${peers.map((p) => `${p.via} ${p.address}`).join(', ')})`)
  await fs.writeFile(a.p('relayed.txt'), 'through the relay')
  await b.waitForContent('relayed.txt', 'through the relay', 60000)
  t.pass('a file travels from A to B')
})
