// The flags that choose how a device finds peers, shared by `mount` and `seed`.
import { Discovery, parseHostPorts } from '../swarm/network'
import { UserError } from '../user-error'

type Flags = Record<string, string | boolean>

export const DISCOVERY_FLAGS = {
  'no-dht': 'boolean', dht: 'boolean', 'no-lan': 'boolean', lan: 'boolean', peer: 'string', listen: 'string', 'force-relay': 'boolean'
} as const

export const DISCOVERY_USAGE = [
  '  --no-dht, --dht       no DHT at all: only --peer, --listen and the LAN; or the DHT (default)',
  '  --no-lan, --lan       find peers of the folder on the local network, or not (default on;',
  '                        env TSYNCFS_LAN=0 turns it off)',
  '  --peer H:P[,..]       known hosts: connect to them directly and stay connected',
  '  --listen PORT         accept direct connections on this TCP port (default: an ephemeral one)',
  '  --force-relay         reach DHT peers through the folder\'s relay (a `seed --relay`) even',
  '                        when holepunching would work (it is used anyway when it fails)'
]

export function discoveryConfig(flags: Flags, env: NodeJS.ProcessEnv = process.env): Discovery {
  const discovery: Discovery = {
    dht: !flags['no-dht'],
    lan: flags.lan === true || (!flags['no-lan'] && env.TSYNCFS_LAN !== '0'),
    forceRelay: flags['force-relay'] === true,
    listen: listenPort(flags.listen),
    peers: knownHosts(flags.peer)
  }
  if (!discovery.dht && !discovery.lan && discovery.peers.length === 0 && discovery.listen === null) {
    throw new UserError('with --no-dht and no LAN, give --peer or --listen: there is no other way to find peers', 2)
  }
  if (!discovery.dht && (discovery.forceRelay || flags.relay === true)) {
    throw new UserError('relaying needs the DHT: drop --no-dht', 2)
  }
  return discovery
}

function listenPort(value: string | boolean | undefined): number | null {
  if (value === undefined) return null
  const port = Number(value)
  if (typeof value !== 'string' || !/^\d+$/.test(value) || port < 1 || port > 65535) {
    throw new UserError(`bad --listen "${value}": expected a TCP port from 1 to 65535`, 2)
  }
  return port
}

function knownHosts(value: string | boolean | undefined): Discovery['peers'] {
  if (value === undefined) return []
  try {
    if (typeof value !== 'string' || value === '') throw new Error('expected HOST:PORT[,HOST:PORT...]')
    return parseHostPorts(value)
  } catch (err) {
    throw new UserError(`bad --peer: ${(err as Error).message}`, 2)
  }
}
