// A private DHT: `tsyncfs bootstrap` runs a few DHT nodes on one host, for devices cut off
// from the public DHT (or kept off it on purpose).
//
// Every node must be usable as a routing-table entry on the devices, and that takes a node
// id matching the address the devices see it at. A device holepunching (every device not on
// loopback is assumed firewalled) classifies its NAT by pinging at least 3 nodes of its
// routing table; with fewer, hyperdht's holepuncher stays "unknown", replaces the socket it
// just answered from, and the other side's first packets go to a closed port: a half-open
// connection that times out after 13 s, again on every retry. hyperdht/testnet's first node
// never learns its own address, so its id is random and devices drop it from their tables:
// 3 testnet nodes gave 2 usable ones, and connections between namespaces came up in about
// half the runs. The first node here is a `bootstrapper`, whose id is that of the address
// given, and the others learn theirs from it.
import HyperDHT from 'hyperdht'
import dgram from 'dgram'
import { HostPort } from './network'

export interface BootstrapNodes {
  addresses: HostPort[] // what devices pass as --bootstrap
  destroy(): Promise<void>
}

/** `host`: the IPv4 address the devices reach this host at; `port`: the first node's port (0: a free one). */
export async function startBootstrapNodes(host: string, port: number, count: number): Promise<BootstrapNodes> {
  // Loopback only if asked; otherwise every interface, as a NATed host's public address may not be local.
  const bind = host.startsWith('127.') ? host : '0.0.0.0'
  if (port === 0) port = await freeUdpPort(bind) // the first node's id is made of its port
  const nodes: HyperDHT[] = []
  const destroy = async (): Promise<void> => {
    for (const node of nodes.reverse()) await node.destroy()
  }
  try {
    nodes.push(HyperDHT.bootstrapper(port, host, { host: bind }))
    await nodes[0].fullyBootstrapped()
    while (nodes.length < count) {
      const node = new HyperDHT({ ephemeral: false, firewalled: false, bootstrap: [{ host, port }], host: bind })
      nodes.push(node)
      await node.fullyBootstrapped()
    }
  } catch (err) {
    await destroy()
    throw err
  }
  return { addresses: [{ host, port }], destroy }
}

function freeUdpPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4')
    socket.once('error', reject)
    socket.bind(0, host, () => {
      const { port } = socket.address()
      socket.close(() => resolve(port))
    })
  })
}
