// Bytes this device uploads to and downloads from peers, over every core of the folder,
// with a short per-second history for the web UI's rate chart.
import Corestore from 'corestore'
import { EventEmitter } from 'events'

export interface RateSample { time: number; up: number; down: number } // bytes per second
export interface TransferTotals { up: number; down: number; history: RateSample[] }

const HISTORY_SECONDS = 300

/** The internal core object corestore hands to `watch` listeners. */
interface InternalCore { addMonitor(monitor: object): void }

/** What hypercore (11.37) uses of every monitor of a core: `emit(event, ...)`, `padding`
 *  (0: we count bytes as they travel) and `extensions` (copied to each new peer). */
class CoreMonitor extends EventEmitter {
  _monitorIndex = -1
  padding = 0
  readonly extensions = new Map<string, unknown>()
}

export class TransferMeter {
  private up = 0
  private down = 0
  private lastUp = 0
  private lastDown = 0
  private readonly history: RateSample[] = []
  private timer: NodeJS.Timeout | null = null

  /** Starts counting on every core the store opens from now on (call before opening any),
   *  including cores opened only to serve a peer, which no session of ours holds. Hypercore
   *  emits 'upload'/'download' only on its monitors (sessions with such listeners); a
   *  session per core would keep every core open, so one monitor object is added per core. */
  attach(store: Corestore): void {
    store.watch((core) => this.monitor(core as InternalCore))
    this.timer = setInterval(() => this.sample(), 1000)
    this.timer.unref()
  }

  private monitor(core: InternalCore): void {
    const monitor = new CoreMonitor()
    monitor.on('upload', (_index: number, bytes: number) => { this.up += bytes })
    monitor.on('download', (_index: number, bytes: number) => { this.down += bytes })
    monitor.on('error', () => {}) // never let a stray event kill the daemon
    core.addMonitor(monitor)
  }

  private sample(): void {
    this.history.push({ time: Date.now(), up: this.up - this.lastUp, down: this.down - this.lastDown })
    if (this.history.length > HISTORY_SECONDS) this.history.shift()
    this.lastUp = this.up
    this.lastDown = this.down
  }

  totals(): TransferTotals {
    return { up: this.up, down: this.down, history: [...this.history] }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
  }
}
