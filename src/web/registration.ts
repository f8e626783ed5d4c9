// Where a running `tsyncfs web` can be found: one file per server in the runtime dir, so
// that the CLI's status and cache ask the same HTTP API the page uses.
import { promises as fs } from 'fs'
import path from 'path'
import { runtimeDir } from '../daemon/paths'
import { liveRecords } from '../daemon/control'

export interface WebRegistration {
  pid: number
  url: string // http://HOST:PORT
  passwordRequired: boolean
}

// A dir of their own: the runtime dir's *.json files are the mounts' registrations.
function webDir(): string {
  return path.join(runtimeDir(), 'web')
}

function fileOf(pid: number): string {
  return path.join(webDir(), `${pid}.json`)
}

export async function registerWeb(reg: WebRegistration): Promise<void> {
  await fs.mkdir(webDir(), { recursive: true, mode: 0o700 })
  await fs.writeFile(fileOf(reg.pid), JSON.stringify(reg), { mode: 0o600 })
}

export function unregisterWeb(pid: number): Promise<void> {
  return fs.rm(fileOf(pid), { force: true })
}

/** Running web servers of this user. */
export function webServers(): Promise<WebRegistration[]> {
  return liveRecords<WebRegistration>(webDir())
}
