// Control commands the web UI needs beyond the CLI's: a directory listing with how much
// of each file is local, the folder's secrets (only when asked), recent events and
// transfer rates. Kept apart from daemon.ts so the daemon only wires them in.
import { FolderKeys } from '../secrets'
import { Folder } from '../model/folder'
import { ActivityLog } from './activity'
import { TransferMeter } from './transfer-meter'
import { ControlRequest } from './control'

export interface FileItem { name: string; path: string; type: string; size: number; mtime: number; local: number; pinned: boolean }

const MAX_LISTING = 2000

export class UiCommands {
  constructor(
    private readonly keys: FolderKeys,
    private readonly folder: Folder,
    private readonly activity: ActivityLog,
    private readonly meter: TransferMeter
  ) {}

  /** The answer to `req`, or undefined when it is not one of these commands. */
  handle(req: ControlRequest): Promise<unknown> | undefined {
    switch (req.cmd) {
      case 'files': return this.files(req.path ?? '/')
      case 'secrets': return Promise.resolve(this.secrets())
      case 'events': return Promise.resolve(this.activity.list(req.since ?? 0))
      case 'transfer': return Promise.resolve(this.meter.totals())
      default: return undefined
    }
  }

  private async files(dir: string): Promise<{ path: string; items: FileItem[]; truncated: boolean }> {
    const pins = (await this.folder.cacheStatus()).pins.paths
    const pinned = (p: string) => pins.some((pin) => p === pin || p.startsWith(pin === '/' ? '/' : pin + '/'))
    const names = this.folder.readdir(dir).sort()
    const items: FileItem[] = []
    for (const name of names.slice(0, MAX_LISTING)) {
      const p = dir === '/' ? '/' + name : dir + '/' + name
      const stat = this.folder.stat(p)
      const { local, size } = stat.type === 'file' ? await this.folder.localOf(p) : { local: 0, size: stat.size }
      items.push({ name, path: p, type: stat.type, size, mtime: stat.mtime, local, pinned: pinned(p) })
    }
    return { path: dir, items, truncated: names.length > MAX_LISTING }
  }

  /** Only what this device's secret can derive: a read-only mount has no read-write secret. */
  private secrets(): { readWrite: string | null; readOnly: string | null; encrypted: string } {
    return { readWrite: this.keys.readWrite, readOnly: this.keys.readOnly, encrypted: this.keys.encrypted }
  }
}
