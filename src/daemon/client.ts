// The one client of the daemons' control sockets, shared by the CLI (status, cache, pin)
// and the web server, so both show the same numbers from the same requests.
import { ControlRequest, Registration, registrations, request } from './control'
import { mountKey } from './paths'

export class DaemonError extends Error {}

/** A running mount, with the stable id the web API names it by. */
export interface MountRef extends Registration { id: string }

export async function mounts(): Promise<MountRef[]> {
  return (await registrations())
    .map((reg) => ({ ...reg, id: mountKey(reg.mountpoint) }))
    .sort((a, b) => a.mountpoint.localeCompare(b.mountpoint))
}

export async function mountById(id: string): Promise<MountRef | null> {
  return (await mounts()).find((m) => m.id === id) ?? null
}

/** Asks one daemon; a refusal becomes a DaemonError with the daemon's message. */
export async function ask<T = unknown>(reg: Registration, req: ControlRequest, timeoutMs?: number): Promise<T> {
  const res = await request(reg.socket, req, timeoutMs)
  if (!res.ok) throw new DaemonError(res.error)
  return res.result as T
}

export function statusOf(reg: Registration): Promise<Record<string, unknown>> {
  return ask<Record<string, unknown>>(reg, { cmd: 'status' })
}

/** The cache numbers, labelled with the mountpoint they belong to. */
export async function cacheOf(reg: Registration): Promise<Record<string, unknown> & { mountpoint: string }> {
  return { ...(await ask<Record<string, unknown>>(reg, { cmd: 'cache' })), mountpoint: reg.mountpoint }
}
