// The config file: defaults for `mount` and `seed`, in $XDG_CONFIG_HOME/tsyncfs/config.json
// (~/.config/tsyncfs/config.json), or the file given with --config (-o config=FILE).
// Its keys are the long options' names, with `dht` and `lan` as true/false and `peers` a
// list. Flags and -o options win over environment variables, which win over the file.
//
//   { "dht": false, "lan": true, "peers": ["203.0.113.7:7070"], "listen": 7070 }
import { promises as fs } from 'fs'
import os from 'os'
import path from 'path'
import { parseHostPorts } from '../swarm/network'
import { parseSize } from '../cache/block-cache'
import { UserError } from '../user-error'

type Flags = Record<string, string | boolean>

/** Checks a value of the file, and returns it as the flags it stands for (or throws a message). */
type Key = (value: unknown) => Flags

const flag = (name: string, check: (value: unknown) => string | boolean): Key => (value) => ({ [name]: check(value) })
const toggle = (on: string, off: string): Key => (value) => ({ [boolean(value) ? on : off]: true })

const KEYS: Record<string, Key> = {
  dht: toggle('dht', 'no-dht'),
  lan: toggle('lan', 'no-lan'),
  peers: flag('peer', addresses),
  listen: flag('listen', port),
  bootstrap: flag('bootstrap', addresses),
  bind: flag('bind', text),
  'force-relay': flag('force-relay', boolean),
  relay: flag('relay', boolean),
  'data-dir': flag('data-dir', text),
  'cache-size': flag('cache-size', size),
  'read-timeout': flag('read-timeout', seconds),
  'keep-all': flag('keep-all', boolean),
  'allow-other': flag('allow-other', boolean)
}

// A flag overrides the file's flags of the same group: --dht beats "dht": false.
const GROUPS = [['dht', 'no-dht'], ['lan', 'no-lan']]

// Environment variables, between flags and the file.
const ENV: Record<string, (value: string) => Flags> = {
  TSYNCFS_DATA_DIR: (v) => ({ 'data-dir': v }),
  TSYNCFS_BOOTSTRAP: (v) => ({ bootstrap: v }),
  TSYNCFS_BIND: (v) => ({ bind: v }),
  TSYNCFS_LAN: (v) => ({ [v === '0' ? 'no-lan' : 'lan']: true })
}

export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config')
  return path.join(base, 'tsyncfs', 'config.json')
}

/** The command line's flags over the environment's over the config file's, limited to the flags `known`. */
export async function withConfigFile(flags: Flags, known: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Promise<Flags> {
  const explicit = typeof flags.config === 'string' ? flags.config : null
  const file = explicit ?? defaultConfigPath(env)
  const fromFile = parseConfig(await readConfig(file, explicit !== null), file)
  const fromEnv = Object.entries(ENV).filter(([name]) => env[name] !== undefined).map(([name, map]) => map(env[name] as string))
  const merged = [fromFile, ...fromEnv, flags].reduce(layer, {})
  return Object.fromEntries(Object.entries(merged).filter(([name]) => name in known))
}

/** The file's text; null if there is no file at the default path. */
async function readConfig(file: string, explicit: boolean): Promise<string | null> {
  try {
    return await fs.readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && !explicit) return null
    throw new UserError(`${file}: cannot read the config file (${code ?? (err as Error).message})`, 2)
  }
}

/** The flags a config file's text stands for. Exported for the unit tests. */
export function parseConfig(text: string | null, file: string): Flags {
  if (text === null) return {}
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new UserError(`${file}: not valid JSON (${(err as Error).message})`, 2)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UserError(`${file}: expected a JSON object of options`, 2)
  const flags: Flags = {}
  for (const [key, value] of Object.entries(json)) {
    const toFlags = KEYS[key]
    if (!toFlags) throw new UserError(`${file}: unknown key "${key}" (known: ${Object.keys(KEYS).join(', ')})`, 2)
    try {
      Object.assign(flags, toFlags(value))
    } catch (err) {
      throw new UserError(`${file}: bad "${key}": ${(err as Error).message}`, 2)
    }
  }
  return flags
}

function layer(lower: Flags, upper: Flags): Flags {
  const out = { ...lower }
  for (const name of Object.keys(upper)) {
    for (const other of GROUPS.find((g) => g.includes(name)) ?? [name]) delete out[other]
  }
  return Object.assign(out, upper)
}

function boolean(value: unknown): boolean {
  if (typeof value !== 'boolean') throw new Error(`expected true or false, not ${JSON.stringify(value)}`)
  return value
}

function text(value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new Error(`expected a non-empty string, not ${JSON.stringify(value)}`)
  return value
}

function addresses(value: unknown): string {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list) || list.length === 0 || !list.every((v) => typeof v === 'string')) {
    throw new Error(`expected "HOST:PORT" or a list of them, not ${JSON.stringify(value)}`)
  }
  const joined = list.join(',')
  parseHostPorts(joined)
  return joined
}

function port(value: unknown): string {
  const n = Number(value)
  if ((typeof value !== 'number' && typeof value !== 'string') || !/^\d+$/.test(String(value)) || n < 1 || n > 65535) {
    throw new Error(`expected a TCP port from 1 to 65535, not ${JSON.stringify(value)}`)
  }
  return String(n)
}

function size(value: unknown): string {
  if ((typeof value !== 'number' && typeof value !== 'string') || parseSize(String(value)) === null) {
    throw new Error(`expected a size like "20G", "512M" or 1048576, not ${JSON.stringify(value)}`)
  }
  return String(value)
}

function seconds(value: unknown): string {
  if (typeof value !== 'number' || !(value > 0)) throw new Error(`expected seconds > 0, not ${JSON.stringify(value)}`)
  return String(value)
}
