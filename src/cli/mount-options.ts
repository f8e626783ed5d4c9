// `-o key=value,...` mount options, as mount(8) and mount.fuse pass them, turned into
// the command line flags of `tsyncfs mount`.
import { UserError } from '../user-error'

/** Options that belong to mount(8), fstab or systemd, not to us: accepted and ignored. */
const IGNORED = new Set(['defaults', 'rw', 'auto', 'noauto', 'user', 'users', 'nouser', '_netdev', 'nofail', 'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'atime', 'noatime', 'relatime', 'async'])

const KEYS: Record<string, string> = {
  data_dir: 'data-dir', bootstrap: 'bootstrap', bind: 'bind', read_timeout: 'read-timeout',
  uid: 'uid', gid: 'gid', umask: 'umask', ro: 'ro', allow_other: 'allow-other', foreground: 'foreground',
  cache_size: 'cache-size', keep_all: 'keep-all',
  config: 'config', dht: 'dht', no_dht: 'no-dht', no_lan: 'no-lan', lan: 'lan', peer: 'peer', listen: 'listen', force_relay: 'force-relay'
}

export function parseMountOptions(text: string): Record<string, string | boolean> {
  const flags: Record<string, string | boolean> = {}
  for (const item of text.split(',').filter(Boolean)) {
    const eq = item.indexOf('=')
    const key = eq === -1 ? item : item.slice(0, eq)
    if (IGNORED.has(key) || key.startsWith('x-') || key.startsWith('comment=')) continue
    const flag = KEYS[key]
    if (!flag) throw new UserError(`unknown mount option "${key}"`, 2)
    const value = eq === -1 ? true : item.slice(eq + 1)
    // peer=A:1,peer=B:2: commas separate options, so known hosts are given one per option.
    flags[flag] = flag === 'peer' && typeof flags.peer === 'string' && typeof value === 'string' ? `${flags.peer},${value}` : value
  }
  return flags
}

/** `tsyncfs SOURCE DIR [-o OPTS]`, the form mount.fuse uses, as `mount` arguments. */
export function fromHelperForm(argv: string[]): string[] {
  const positionals: string[] = []
  const flags: string[] = []
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-o') {
      const opts = argv[++i]
      if (opts === undefined) throw new UserError('-o needs options', 2)
      for (const [flag, value] of Object.entries(parseMountOptions(opts))) {
        flags.push(`--${flag}`)
        if (value !== true) flags.push(String(value))
      }
    } else if (argv[i].startsWith('-o')) {
      argv.splice(i + 1, 0, argv[i].slice(2))
      argv[i] = '-o'
      i--
    } else {
      positionals.push(argv[i])
    }
  }
  return ['mount', ...positionals, ...flags]
}
