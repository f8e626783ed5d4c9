// One writer at a time: version vectors are computed from the current view, so two
// interleaved mutations of this device would otherwise reuse a counter.
export class Mutex {
  private tail: Promise<void> = Promise.resolve()

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail
    let release!: () => void
    this.tail = new Promise((resolve) => (release = resolve))
    await prev
    try {
      return await fn()
    } finally {
      release()
    }
  }
}
