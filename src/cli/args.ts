// A small argument parser: --flag value, --flag=value, boolean flags, positionals.
import { UserError } from '../user-error'

export type FlagSpec = Record<string, 'string' | 'boolean'>
export interface Parsed { positionals: string[]; flags: Record<string, string | boolean> }

export function parseArgs(argv: string[], spec: FlagSpec): Parsed {
  const positionals: string[] = []
  const flags: Record<string, string | boolean> = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (!arg.startsWith('--') || arg === '--') {
      positionals.push(arg)
      continue
    }
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq === -1 ? undefined : eq)
    const kind = spec[name]
    if (!kind) throw new UserError(`unknown option --${name} (see --help)`, 2)
    if (kind === 'boolean') {
      flags[name] = true
    } else {
      const value = eq === -1 ? argv[++i] : arg.slice(eq + 1)
      if (value === undefined) throw new UserError(`option --${name} needs a value`, 2)
      flags[name] = value
    }
  }
  return { positionals, flags }
}
