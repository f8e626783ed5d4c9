// The folder model: the merged view of every member's log, and this device's changes to
// it. It speaks paths, errors and buffers; it knows nothing of FUSE or the network.
import { EventEmitter } from 'events'
import { createHash } from 'crypto'
import path from 'path'
import Corestore from 'corestore'
import Hypercore from 'hypercore'
import { FolderKeys } from '../secrets'
import { ReadAhead } from '../cache/read-ahead'
import { Certificate, certify, isValidCertificate, loadMembers, saveMembers } from './certificates'
import { ContentStore, BLOCK_SIZE, BACKGROUND_DELAY_MS } from './content'
import { ContentRef, Entry, EntryType, typeBits } from './entry'
import { fail, FsError } from './errors'
import { MemberDrive, groupRecords } from './member-drive'
import { MergedIndex, parentOf } from './merged-index'
import { Mutex } from './mutex'
import { CommitPacer } from './commit-pacer'
import { StagedFile, StagingArea } from './staging'
import { Pins, PinProgress } from './pins'
import { BlockCache, CacheStats } from '../cache/block-cache'
import { CopyMirror, ReadCopies } from '../cache/read-copies'
import { bump, compare, VersionVector } from './version-vector'

export interface Stat {
  type: EntryType
  mode: number // with the file type bits
  size: number
  mtime: number
}

export interface FolderOptions {
  store: Corestore
  keys: FolderKeys
  dir: string // this folder's state directory on this device
  readTimeoutMs: number
  readOnly?: boolean // never write, even with the read-write secret
  cacheLimit: number // bytes of other members' content kept on this disk
  keepAll?: boolean // mirror everything, never evict
}

interface Handle {
  path: string
  staged: StagedFile | null
  content: ContentRef | null // what a read-only handle reads: the version it opened
  readAhead: ReadAhead
  seekRead: Promise<void> | null // the read after the last seek, until its bytes are in
}

type EntryFields = Omit<Entry, 'vv' | 'device'>

const O_ACCMODE = 3
const O_TRUNC = 0o1000
const TRUNCATE_HOLD_MS = 500
const EMPTY_HASH = createHash('sha256').digest('hex')
/** Files committed together at most: bounds the memory one commit holds. */
const MAX_GROUP_COMMIT = 256
/** Closed files waiting for their commit beyond which close(2) waits for the commits ahead
 *  (like the kernel's dirty page limit): bounds the backlog's memory and journal. */
const MAX_QUEUED_COMMITS = 1024
/** Least time between the starts of two group commits while files keep coming. */
const GROUP_COMMIT_PACE_MS = 50

interface QueuedCommit { evenIfOpen: boolean; resolve: () => void; reject: (err: unknown) => void }
/** `background`: nobody waits for it, so it may wait for others to group with it; `now`:
 *  a caller waits (rename, the backlog's throttle); `evenIfOpen`: now, and also for a file
 *  still open (fsync, shutdown). */
type CommitUrgency = 'background' | 'now' | 'evenIfOpen'

export class Folder extends EventEmitter {
  readonly index = new MergedIndex()
  readonly content: ContentStore
  private readonly members = new Map<string, MemberDrive>()
  private readonly certificates = new Map<string, Certificate>()
  private own: MemberDrive | null = null
  private ownBlobs: Hypercore | null = null
  private readonly mutex = new Mutex()
  private readonly staging: StagingArea
  private readonly committing = new Map<StagedFile, Promise<void>>()
  /** Closed files waiting for a group commit, in the order they were closed. */
  private readonly queuedCommits = new Map<StagedFile, QueuedCommit>()
  private readonly commitPacer = new CommitPacer(() => {
    this.mutex.run(() => this.commitQueued()).catch(() => {})
  }, GROUP_COMMIT_PACE_MS)
  private readonly handles = new Map<number, Handle>()
  private readonly staged = new Map<string, StagedFile>()
  private nextFd = 1
  private settling = false
  private closing = false
  private cache: BlockCache | null = null
  private pins: Pins | null = null
  private pinRefresh: NodeJS.Timeout | null = null
  private readonly opening = new Map<string, Promise<void>>()

  constructor(private readonly opts: FolderOptions) {
    super()
    this.content = new ContentStore(opts.store, opts.keys.contentKey, opts.readTimeoutMs)
    this.content.onStall = (err) => this.emit('warning', err)
    this.staging = new StagingArea(path.join(opts.dir, 'staging'), path.join(opts.dir, 'write-back.journal'))
  }

  /** Calls `listener` whenever what a path shows may have changed (by a peer, or a commit). */
  onChange(listener: (paths: readonly string[]) => void): void {
    this.index.onChange(listener)
  }

  get writable(): boolean {
    return this.own !== null
  }

  get deviceId(): string | null {
    return this.own?.deviceId ?? null
  }

  async open(): Promise<void> {
    for (const cert of await loadMembers(this.opts.dir)) this.certificates.set(cert.driveKey.toString('hex'), cert)
    const { keys, store, dir } = this.opts
    const limit = this.opts.keepAll ? Infinity : this.opts.cacheLimit
    this.cache = new BlockCache(path.join(dir, 'cache.json'), limit, this.content, (err) => this.emit('warning', err))
    await this.cache.load()
    this.content.cache = this.cache
    // A full mirror keeps every block anyway: a second copy would double its disk use.
    if (!this.opts.keepAll) {
      const copies = new ReadCopies(path.join(dir, 'copies'), BLOCK_SIZE)
      await copies.open()
      this.content.copies = copies
      this.content.onCopyError = (err) => this.emit('warning', err)
      copies.onMirrorRead = (core, index) => this.cache?.usedDirect(core, index)
    }
    this.pins = new Pins(path.join(dir, 'pins.json'), this.index, this.content, this.cache, !!this.opts.keepAll)
    await this.pins.load()
    if (keys.folderKeyPair && !this.opts.readOnly) {
      this.own = await this.openDrive(store.namespace('own-drive'), null)
      this.ownBlobs = await this.own.blobCore()
      this.content.registerOwn(this.ownBlobs)
      await this.addCertificate(certify(keys.folderKeyPair, this.own.key))
    }
    await Promise.all([...this.certificates.values()].map((c) => this.openMember(c.driveKey)))
    if (this.writable) await this.settleConflicts()
    // A read-only mount leaves what a read-write one staged for that one to commit.
    const recovered = await this.staging.open(this.writable)
    this.recoverStaged(recovered)
    const pinned = this.pins.pinnedRefs().reduce((n, ref) => n + ref.byteLength, 0)
    if (pinned > limit) throw new Error(`the cache limit (${limit} bytes) is smaller than what is pinned (${pinned} bytes): raise --cache-size or unpin`)
    this.pins.refresh()
    this.cache.evictSoon()
  }

  async close(): Promise<void> {
    this.closing = true
    for (const fd of [...this.handles.keys()]) await this.release(fd).catch(() => {})
    // Closed files still waiting for their commit, and files held without a handle (a
    // truncate waiting for its open), are committed too.
    for (const staged of [...this.staged.values()]) {
      await this.commit(staged, 'evenIfOpen').then(() => this.retire(staged)).catch((err) => this.emit('warning', err))
    }
    await this.staging.close().catch((err) => this.emit('warning', err))
    if (this.pinRefresh) clearTimeout(this.pinRefresh)
    await this.cache?.close().catch((err) => this.emit('warning', err))
    await this.content.copies?.close().catch((err) => this.emit('warning', err))
    await Promise.all([...this.members.values()].map((m) => m.close().catch(() => {})))
  }

  // --- membership ---

  allCertificates(): Certificate[] {
    return [...this.certificates.values()]
  }

  memberDevices(): string[] {
    return [...this.members.keys()]
  }

  /** Accepts a certificate from anywhere; only valid ones are kept. True when new. */
  async addCertificate(cert: Certificate): Promise<boolean> {
    if (!isValidCertificate(this.opts.keys.folderPublicKey, cert)) return false
    const hex = cert.driveKey.toString('hex')
    const known = this.certificates.has(hex)
    if (!known) {
      this.certificates.set(hex, cert)
      await this.saveCertificates()
    }
    if (!this.memberByKey(cert.driveKey)) await this.openMember(cert.driveKey)
    if (!known) this.emit('member', cert)
    return !known
  }

  private memberByKey(key: Buffer): MemberDrive | undefined {
    for (const m of this.members.values()) if (m.key.equals(key)) return m
    return undefined
  }

  /** Opens a member's drive once, however many certificates for it arrive at once (a
   *  second open would wait forever on the first one's exclusive lock of the core). */
  private openMember(driveKey: Buffer): Promise<void> {
    if (this.memberByKey(driveKey)) return Promise.resolve()
    const hex = driveKey.toString('hex')
    let opening = this.opening.get(hex)
    if (!opening) {
      opening = this.openDrive(this.opts.store.session(), driveKey).then(() => {}).finally(() => this.opening.delete(hex))
      this.opening.set(hex, opening)
    }
    return opening
  }

  private async openDrive(store: Corestore, key: Buffer | null): Promise<MemberDrive> {
    const member = await MemberDrive.open(
      store,
      key,
      this.opts.keys.contentKey,
      (device, p, entry) => this.index.put(device, p, entry),
      () => this.onSynced(),
      (err) => this.emit('warning', err)
    )
    this.members.set(member.deviceId, member)
    return member
  }

  private onSynced(): void {
    this.emit('update')
    // New files below a pinned directory are pinned too.
    if (this.pins && !this.pinRefresh) {
      this.pinRefresh = setTimeout(() => { this.pinRefresh = null; this.pins?.refresh() }, 300)
    }
    if (this.writable && this.index.conflictedPaths().length) this.settleConflicts().catch((err) => this.emit('warning', err))
  }

  private async saveCertificates(): Promise<void> {
    await saveMembers(this.opts.dir, this.allCertificates())
  }

  // --- reading ---

  stat(p: string): Stat {
    return this.stagedStat(p) ?? statOf(this.entry(p))
  }

  /** The stat of a file open for writing here, whose size and mtime are ahead of its entry. */
  private stagedStat(p: string): Stat | null {
    const staged = this.staged.get(p)
    return staged && !staged.unlinked ? { type: 'file', mode: typeBits('file') | staged.mode, size: staged.size, mtime: staged.mtime } : null
  }

  /** Whether `p` is a file written here and not yet retired, whose stat (and existence)
   *  this device shows instead of its entry's: changes to the entry do not show meanwhile. */
  showsStaged(p: string): boolean {
    return this.stagedStat(p) !== null
  }

  exists(p: string): boolean {
    return this.index.get(p) !== undefined
  }

  readdir(p: string): string[] {
    if (this.entry(p).type !== 'dir') fail('ENOTDIR', p)
    return this.index.list(p)
  }

  /** A directory's children with their stats, as `readdir` and `stat` of each would give. */
  listing(p: string): { names: string[]; stats: Stat[] } {
    if (this.entry(p).type !== 'dir') fail('ENOTDIR', p)
    const names: string[] = []
    const stats: Stat[] = []
    const dir = p === '/' ? '' : p
    for (const [name, node] of this.index.childNodes(p)) {
      names.push(name)
      stats.push((this.staged.size > 0 ? this.stagedStat(`${dir}/${name}`) : null) ?? statOf(node.entry))
    }
    return { names, stats }
  }

  readlink(p: string): string {
    const entry = this.entry(p)
    if (entry.type !== 'symlink') fail('EINVAL', p)
    return entry.target ?? ''
  }

  private entry(p: string): Entry {
    const node = this.index.get(p)
    if (!node) fail('ENOENT', p)
    return node.entry
  }

  // --- open files ---

  async openFile(p: string, flags: number): Promise<number> {
    const entry = this.entry(p)
    if (entry.type === 'dir') fail('EISDIR', p)
    const forWrite = opensForWrite(flags)
    if (forWrite) this.requireWritable()
    const existing = this.staged.get(p)
    const staged = forWrite ? await this.stage(p, (flags & O_TRUNC) !== 0) : existing ?? null
    if (staged && !forWrite) staged.refs++
    return this.addHandle({ path: p, staged, content: entry.content ?? null, readAhead: new ReadAhead(), seekRead: null })
  }

  async create(p: string, mode: number): Promise<number> {
    this.requireWritable()
    this.requireParentDir(p)
    if (this.index.get(p)) fail('EEXIST', p)
    const mtime = Date.now()
    const base = this.index.resolution(p).frontier
    const staged = this.staging.create({ path: p, mode: mode & 0o7777, mtime, base })
    staged.dirty = true
    staged.refs = 1
    this.staged.set(p, staged)
    this.showNew(staged)
    return this.addHandle({ path: p, staged, content: null, readAhead: new ReadAhead(), seekRead: null })
  }

  /** Lets another reader (FUSE's threads) read the read copies too. */
  mirrorCopies(mirror: CopyMirror): boolean {
    this.content.copies?.attach(mirror)
    return this.content.copies !== null
  }

  /** Where a handle's bytes would lie in the read copies, if it reads one fixed version
   *  of committed content (what it reads then never changes). */
  copyRange(fd: number): { core: string; base: number; size: number } | null {
    const { staged, content: ref } = this.handle(fd)
    const base = ref && !staged ? this.content.copyBase(ref) : null
    return ref && base !== null ? { core: ref.core, base, size: ref.byteLength } : null
  }

  /** Reads up to `target.length` bytes at `offset` into `target`; returns how many. */
  async read(fd: number, offset: number, target: Buffer): Promise<number> {
    const h = this.handle(fd)
    if (h.staged) return (await h.staged.read(offset, target.length)).copy(target)
    const ref = h.content
    if (!ref) return 0
    const range = h.readAhead.observe(offset, target.length, ref.blockSize, ref.blockLength)
    const reading = this.content.readInto(ref, offset, target)
    if (h.readAhead.seeked) this.holdReadAhead(h, reading)
    if (range) {
      const prefetch = (): void => this.content.prefetch(ref, range[0], range[1])
      // After the seek's own read, and after its replies and the requests they bring: the
      // read-ahead's sends come second.
      if (h.seekRead) h.seekRead.then(() => setTimeout(prefetch, BACKGROUND_DELAY_MS))
      else prefetch()
    }
    return reading
  }

  /**
   * After a seek, the read-ahead waits until the read's own bytes are in: asked for at
   * once, its blocks shared the peer's upload and this device's verification with the
   * read's block, which arrived about 50 ms later (traced: 1 MiB at 512 MiB of a cold file).
   */
  private holdReadAhead(h: Handle, reading: Promise<unknown>): void {
    const settled = reading.then(() => {}, () => {}).then(() => {
      if (h.seekRead === settled) h.seekRead = null
    })
    h.seekRead = settled
  }

  async write(fd: number, data: Buffer, offset: number): Promise<number> {
    const h = this.handle(fd)
    if (!h.staged) fail('EBADF')
    return h.staged.write(data, offset)
  }

  /** close(2): the bytes are committed in the background (write-back). */
  async flush(fd: number): Promise<void> {
    const h = this.handle(fd)
    if (h.staged) await this.writeBack(h.staged)
  }

  /** fsync(2): the bytes are in this device's log when it returns. */
  async fsync(fd: number): Promise<void> {
    const h = this.handle(fd)
    if (h.staged) await this.commit(h.staged, 'evenIfOpen')
  }

  async release(fd: number): Promise<void> {
    const h = this.handle(fd)
    this.handles.delete(fd)
    if (h.staged) await this.unstage(h.staged)
  }

  private addHandle(h: Handle): number {
    const fd = this.nextFd++
    this.handles.set(fd, h)
    return fd
  }

  /** Whether what happens through a handle may change its file's stat: it writes, or it
   *  reads a file still being written (its release may commit that file). */
  changesThrough(fd: number): boolean {
    return this.handles.get(fd)?.staged != null
  }

  private handle(fd: number): Handle {
    const h = this.handles.get(fd)
    if (!h) fail('EBADF')
    return h
  }

  /** One staging file per path, shared by every handle that writes it. */
  private async stage(p: string, truncate: boolean): Promise<StagedFile> {
    const existing = this.staged.get(p)
    if (existing) {
      existing.refs++
      // A commit reading it (a closed file's background commit) finishes first.
      await this.committing.get(existing)?.catch(() => {})
      if (truncate && existing.size > 0) await existing.truncate(0)
      return existing
    }
    const entry = this.entry(p)
    const base = this.index.resolution(p).frontier
    const staged = this.staging.create({ path: p, mode: entry.mode, mtime: entry.mtime, base })
    staged.refs = 1
    try {
      if (!truncate && entry.content) await this.fill(staged, entry.content)
    } catch (err) {
      await staged.discard()
      throw err
    }
    staged.dirty = truncate && entry.size > 0
    staged.mtime = truncate ? Date.now() : entry.mtime
    this.staged.set(p, staged)
    return staged
  }

  private async fill(staged: StagedFile, ref: ContentRef): Promise<void> {
    const step = BLOCK_SIZE * 16
    for (let offset = 0; offset < ref.byteLength; offset += step) {
      await staged.write(await this.content.read(ref, offset, step), offset)
    }
  }

  private async unstage(staged: StagedFile): Promise<void> {
    staged.refs--
    await this.writeBack(staged)
    if (staged.refs <= 0) await staged.idle()
  }

  /** Write-back: close returns once the staged bytes and a journal record of them are on
   *  this disk; the commit runs in the background, grouped with others (rclone's
   *  "--vfs-cache-mode writes"). Until it lands, this device reads and lists the staged
   *  file; a daemon that dies first replays the journal at the next open. */
  private async writeBack(staged: StagedFile): Promise<void> {
    if (staged.dirty && !staged.unlinked) {
      await staged.writeJournal().catch((err) => this.emit('warning', new Error(`journal of ${staged.path}: ${(err as Error).message}`)))
    }
    this.commitInBackground(staged)
    if (this.queuedCommits.size > MAX_QUEUED_COMMITS) await this.commit(staged).catch(() => {})
  }

  private commitInBackground(staged: StagedFile, retryMs = 0): void {
    this.commit(staged, 'background').then(() => this.retire(staged), (err) => {
      if (this.closing) return // close() commits it once more, or the journal keeps it
      const next = Math.min(Math.max(retryMs * 2, 1000), 60000)
      this.emit('warning', new Error(`commit of ${staged.path} failed (${(err as Error).message}); retrying in ${next / 1000} s`))
      setTimeout(() => this.commitInBackground(staged, next), next).unref()
    }).catch((err) => this.emit('warning', err))
  }

  /** Forgets a staged file once it is committed and nothing holds it. */
  private async retire(staged: StagedFile): Promise<void> {
    if (staged.refs > 0 || (staged.dirty && !staged.unlinked) || this.committing.has(staged)) return
    if (this.staged.get(staged.path) === staged) {
      const shown = this.stagedStat(staged.path)
      this.staged.delete(staged.path)
      // The stat shown switches to the entry's: the same, unless a peer's version won meanwhile.
      const entry = this.index.get(staged.path)?.entry
      if (shown && !(entry && sameStat(shown, statOf(entry)))) this.index.announce([staged.path])
    }
    await staged.discard()
  }

  /** Waits for the background commits of closed files at or below `p`: a rename, chmod or
   *  utimens must build on the committed version, or peers would see the empty
   *  placeholder that a new file has until its commit. */
  private async settleWriteBack(...paths: string[]): Promise<void> {
    const under = (s: StagedFile) => paths.some((p) => p === '/' || s.path === p || s.path.startsWith(p + '/'))
    const pending = [...this.staged.values()].filter((s) => s.refs <= 0 && under(s))
    await Promise.all(pending.map((s) => this.commit(s).catch(() => {})))
  }

  /** Commits the files that a daemon which died had closed but not committed. */
  private recoverStaged(recovered: StagedFile[]): void {
    for (const staged of recovered) {
      this.staged.set(staged.path, staged)
      if (!this.index.get(staged.path)) this.showNew(staged)
      this.commitInBackground(staged)
    }
    if (recovered.length) this.emit('recovered', recovered.map((s) => s.path))
  }

  /** A new file is listed on this device at once; the log has it from its commit. */
  private showNew(staged: StagedFile): void {
    const device = this.requireDevice()
    this.index.put(device, staged.path, { type: 'file', mode: staged.mode, mtime: staged.mtime, size: 0, vv: bump(staged.base, device), device })
  }

  /** Appends the staged bytes to this device's blob core and records the new version.
   *  Commits that arrive while another runs are grouped into one (group commit): many
   *  small files cost one storage write and one log batch, not two each. */
  private commit(staged: StagedFile, urgency: CommitUrgency = 'now'): Promise<void> {
    // Nothing new to write (a release after a flush): wait only for a commit under way.
    if (!staged.dirty) return this.committing.get(staged) ?? Promise.resolve()
    const evenIfOpen = urgency === 'evenIfOpen'
    const queued = this.queuedCommits.get(staged)
    if (queued) {
      queued.evenIfOpen ||= evenIfOpen
      this.scheduleCommit(urgency)
      return this.committing.get(staged)! // set below when it was queued
    }
    const done = new Promise<void>((resolve, reject) => { this.queuedCommits.set(staged, { evenIfOpen, resolve, reject }) })
    this.scheduleCommit(urgency)
    this.committing.set(staged, done)
    const forget = (): void => { if (this.committing.get(staged) === done) this.committing.delete(staged) }
    done.then(forget, forget)
    return done
  }

  /** A group commit of the queued files starts at once when someone waits for it or a full
   *  group is queued, else when the pace allows. */
  private scheduleCommit(urgency: CommitUrgency): void {
    this.commitPacer.request(urgency !== 'background' || this.queuedCommits.size >= MAX_GROUP_COMMIT)
  }

  private async commitQueued(): Promise<void> {
    // A bounded group: thousands of small files closed at once would otherwise become one
    // batch held in memory whole (8,000 files: 170 MiB of heap).
    const batch: Array<[StagedFile, QueuedCommit]> = []
    for (const item of this.queuedCommits) {
      if (batch.length >= MAX_GROUP_COMMIT) break
      batch.push(item)
    }
    for (const [staged] of batch) this.queuedCommits.delete(staged)
    this.commitPacer.started(batch.length)
    if (this.queuedCommits.size) this.scheduleCommit('background')
    const waiting = batch.map(([, queued]) => queued)
    // A file open again for writing is committed at its next close (or fsync), not in a
    // state half rewritten.
    const files = batch.filter(([s, q]) => s.dirty && !s.unlinked && (s.refs <= 0 || q.evenIfOpen)).map(([s]) => s)
    const sizes = files.map((staged) => staged.size)
    for (const staged of files) staged.dirty = false
    try {
      const stored = files.length === 0 ? [] : await this.content.appendFiles(this.requireBlobs(),
        files.map((staged, i) => sizes[i] > 0 ? staged.chunks(BLOCK_SIZE, sizes[i]) : null))
      const changes = files.map((staged, i): [string, EntryFields] => [staged.path, {
        type: 'file', mode: staged.mode, mtime: staged.mtime, size: sizes[i],
        content: stored[i]?.ref ?? null, hash: stored[i]?.hash ?? EMPTY_HASH
      }])
      const written = await this.writeEntries(changes, new Map(files.map((staged) => [staged.path, staged.base])))
      files.forEach((staged, i) => { staged.base = written[i].vv })
      // Its journal record is void now, unless it changed meanwhile (written again at close).
      // All at once: the journal writes records that arrive together in one append.
      await Promise.all(files.filter((staged) => !staged.dirty).map((staged) => staged.committed()))
      for (const w of waiting) w.resolve()
    } catch (err) {
      for (const staged of files) staged.dirty = true // a later flush may still succeed (after space was freed)
      const reported = (err as NodeJS.ErrnoException).code === 'ENOSPC' ? new FsError('ENOSPC') : err
      for (const w of waiting) w.reject(reported)
    }
  }

  // --- namespace changes ---

  mkdir(p: string, mode: number): Promise<void> {
    return this.mutate(async () => {
      this.requireParentDir(p)
      if (this.index.get(p)) fail('EEXIST', p)
      await this.writeEntries([[p, { type: 'dir', mode: mode & 0o7777, mtime: Date.now(), size: 0 }]])
    })
  }

  rmdir(p: string): Promise<void> {
    return this.mutate(async () => {
      const entry = this.entry(p)
      if (entry.type !== 'dir') fail('ENOTDIR', p)
      if (p === '/') fail('EBUSY', p)
      if (this.index.list(p).length > 0) fail('ENOTEMPTY', p)
      await this.writeEntries([[p, tombstone(entry)]])
    })
  }

  unlink(p: string): Promise<void> {
    return this.mutate(async () => {
      const entry = this.entry(p)
      if (entry.type === 'dir') fail('EISDIR', p)
      const staged = this.staged.get(p)
      if (staged) {
        staged.unlinked = true
        this.staged.delete(p)
        await staged.committed() // nothing of it may come back after a crash
      }
      await this.writeEntries([[p, tombstone(entry)]])
    })
  }

  symlink(target: string, p: string): Promise<void> {
    return this.mutate(async () => {
      this.requireParentDir(p)
      if (this.index.get(p)) fail('EEXIST', p)
      await this.writeEntries([[p, { type: 'symlink', mode: 0o777, mtime: Date.now(), size: Buffer.byteLength(target), target }]])
    })
  }

  async chmod(p: string, mode: number): Promise<void> {
    await this.settleWriteBack(p)
    return this.mutate(async () => {
      const staged = this.staged.get(p)
      if (staged) staged.mode = mode & 0o7777
      await this.writeEntries([[p, { ...this.liveEntry(p), mode: mode & 0o7777 }]])
    })
  }

  async utimens(p: string, mtime: number): Promise<void> {
    await this.settleWriteBack(p)
    return this.mutate(async () => {
      const staged = this.staged.get(p)
      if (staged) staged.mtime = mtime
      await this.writeEntries([[p, { ...this.liveEntry(p), mtime }]])
    })
  }

  async truncate(p: string, size: number): Promise<void> {
    this.requireWritable()
    const entry = this.entry(p)
    if (entry.type === 'dir') fail('EISDIR', p)
    if (size < 0) fail('EINVAL', p)
    const open = this.staged.get(p)
    if (open && open.refs > 0) return open.truncate(size) // committed at its close
    if (!open && size === entry.size) return
    const staged = await this.stage(p, size === 0)
    await staged.truncate(size)
    if (size > 0) return this.unstage(staged)
    // open(O_TRUNC) reaches us as truncate-to-0 then open: hold the staged file briefly
    // so the open picks it up and one version is written at close, not an empty one first.
    setTimeout(() => {
      if (staged.refs > 1) staged.refs--
      else this.unstage(staged).catch((err) => this.emit('warning', err))
    }, TRUNCATE_HOLD_MS)
  }

  async rename(src: string, dst: string): Promise<void> {
    await this.settleWriteBack(src, dst)
    return this.mutate(async () => {
      if (src === dst) return
      const from = this.entry(src)
      this.requireParentDir(dst)
      if (dst.startsWith(src + '/')) fail('EINVAL', `${dst} is inside ${src}`)
      const to = this.index.get(dst)?.entry
      if (to && from.type === 'dir' && to.type !== 'dir') fail('ENOTDIR', dst)
      if (to && from.type !== 'dir' && to.type === 'dir') fail('EISDIR', dst)
      if (to?.type === 'dir' && this.index.list(dst).length > 0) fail('ENOTEMPTY', dst)
      const changes: Array<[string, EntryFields]> = []
      for (const q of [...this.index.walk(src)]) {
        const moved = dst + q.slice(src.length)
        const entry = this.entry(q)
        changes.push([moved, { ...stripVersion(entry), deleted: false }], [q, tombstone(entry)])
      }
      await this.moveStaged(src, dst)
      await this.writeEntries(changes)
      // A file still open under its new name builds on the version just written there.
      for (const [p, staged] of this.staged) {
        if (p === dst || p.startsWith(dst + '/')) staged.base = this.index.resolution(p).frontier
      }
    })
  }

  private async moveStaged(src: string, dst: string): Promise<void> {
    for (const [p, staged] of [...this.staged]) {
      if (p !== src && !p.startsWith(src + '/')) continue
      this.staged.delete(p)
      staged.path = dst + p.slice(src.length)
      this.staged.set(staged.path, staged)
      await staged.renamed().catch((err) => this.emit('warning', new Error(`journal of ${staged.path}: ${(err as Error).message}`)))
    }
    for (const h of this.handles.values()) {
      if (h.path === src || h.path.startsWith(src + '/')) h.path = dst + h.path.slice(src.length)
    }
  }

  // --- writing the log ---

  private mutate(fn: () => Promise<void>): Promise<void> {
    this.requireWritable()
    return this.mutex.run(fn)
  }

  /** Writes new versions of paths to this device's log in one batch. Each version
   *  dominates what this device has seen, unless `bases` says the change was made on an
   *  older view (a file open while another device changed it): then it is concurrent,
   *  and both survive. Unsettled conflicts at a path are settled first so that no
   *  version is shadowed. */
  private async writeEntries(changes: Array<[string, EntryFields]>, bases = new Map<string, VersionVector>()): Promise<Entry[]> {
    const device = this.requireDevice()
    const puts: Array<[string, Entry]> = []
    const planned = new Map<string, Entry>()
    const versionOf = (p: string, base?: VersionVector): VersionVector => {
      const prior = planned.get(p)?.vv ?? this.index.resolution(p).frontier
      const othersAhead = base && this.index.candidatesOf(p).some((e) => e.device !== device && !dominatedBy(e.vv, base))
      return bump(othersAhead && base ? base : prior, device)
    }
    const add = (p: string, fields: EntryFields, base?: VersionVector): Entry => {
      const entry: Entry = { ...fields, vv: versionOf(p, base), device }
      planned.set(p, entry)
      puts.push([p, entry])
      return entry
    }
    for (const [p] of changes) {
      for (const [copyPath, loser] of this.index.conflictCopies(p)) {
        if (!planned.has(copyPath)) add(copyPath, stripVersion(loser))
      }
    }
    const written = changes.map(([p, fields]) => add(p, fields, bases.get(p)))
    await this.persist(puts)
    return written
  }

  /** One change is one hyperdrive entry. Several (a group commit, a rename) are grouped
   *  into records of up to 256 entries, appended together: a log block
   *  per file had cost both devices a hyperbee put, a replication round trip and a
   *  verification each (docs/design.md, "Group commits are one log block"). */
  private async persist(puts: Array<[string, Entry]>): Promise<void> {
    const own = this.own!
    if (puts.length === 1) {
      await own.drive.putEntry(puts[0][0], { metadata: puts[0][1] })
    } else {
      const batch = own.drive.batch()
      for (const [key, record] of groupRecords(own.drive.core.length, puts)) await batch.db.put(key, record)
      await batch.flush()
    }
    for (const [p, entry] of puts) this.index.put(own.deviceId, p, entry)
  }

  /** Makes concurrent versions durable as conflict copies, so that the next edit of the
   *  winner does not shadow them. Every writer may do this; they converge because the
   *  copies' names and contents are derived from the versions themselves. */
  private async settleConflicts(): Promise<void> {
    if (this.settling) return
    this.settling = true
    try {
      await this.mutex.run(async () => {
        for (const p of this.index.conflictedPaths()) {
          const winner = this.index.resolution(p).winner
          if (winner) await this.writeEntries([[p, stripVersion(winner)]])
        }
      })
    } finally {
      this.settling = false
    }
  }

  private liveEntry(p: string): EntryFields {
    return stripVersion(this.entry(p))
  }

  private requireParentDir(p: string): void {
    const parent = this.index.get(parentOf(p))
    if (!parent) fail('ENOENT', parentOf(p))
    if (parent.entry.type !== 'dir') fail('ENOTDIR', parentOf(p))
    // statfs promises names of at most 255 bytes, as local file systems allow.
    if (Buffer.byteLength(path.posix.basename(p)) > 255) fail('ENAMETOOLONG', p)
  }

  private requireWritable(): void {
    if (!this.own) fail('EROFS')
  }

  private requireDevice(): string {
    if (!this.own) fail('EROFS')
    return this.own.deviceId
  }

  private requireBlobs(): Hypercore {
    if (!this.ownBlobs) fail('EROFS')
    return this.ownBlobs
  }

  // --- numbers for status and statfs ---

  totals(): { files: number; dirs: number; bytes: number; conflicts: number } {
    let files = 0
    let dirs = 0
    let bytes = 0
    for (const [, node] of this.index.nodes()) {
      if (node.entry.type === 'dir') dirs++
      else files++
      if (node.entry.type === 'file') bytes += node.entry.size
    }
    return { files, dirs, bytes, conflicts: this.index.conflictedPaths().length }
  }

  /** Bytes of visible files whose blocks are on this disk. */
  async localBytes(): Promise<number> {
    let local = 0
    for (const [, ref] of this.files()) local += await this.content.localBytes(ref)
    return local
  }

  /** Files not wholly on this disk, with how much of each is. */
  async partialFiles(max: number): Promise<Array<{ path: string; local: number; size: number }>> {
    const out = []
    for (const [p, ref] of this.files()) {
      const local = await this.content.localBytes(ref)
      if (local < ref.byteLength) out.push({ path: p, local, size: ref.byteLength })
      if (out.length >= max) break
    }
    return out
  }

  /** How much of one file is on this disk (for the user.tsyncfs.local attribute). */
  async localOf(p: string): Promise<{ local: number; size: number }> {
    const staged = this.staged.get(p)
    if (staged) return { local: staged.size, size: staged.size }
    const entry = this.entry(p)
    if (entry.type !== 'file' || !entry.content) return { local: entry.size, size: entry.size }
    return { local: await this.content.localBytes(entry.content), size: entry.size }
  }

  private *files(): Generator<[string, ContentRef]> {
    for (const [p, node] of this.index.nodes()) {
      if (node.entry.type === 'file' && node.entry.content) yield [p, node.entry.content]
    }
  }

  // --- cache and pins ---

  async pin(p: string): Promise<void> {
    this.entry(p)
    const pins = this.requirePins()
    const needed = pins.pinnedRefs(p).reduce((n, ref) => n + ref.byteLength, 0)
    if (needed > this.requireCache().limit) {
      throw new Error(`pinning ${p} needs ${needed} bytes, more than the cache limit of ${this.requireCache().limit}`)
    }
    await pins.set(new Set([...pins.list(), p]))
  }

  async unpin(p: string): Promise<void> {
    const pins = this.requirePins()
    if (!pins.list().includes(p)) throw new Error(`${p} is not pinned`)
    await pins.set(new Set(pins.list().filter((x) => x !== p)))
  }

  async cacheStatus(): Promise<CacheStats & { pins: PinProgress }> {
    return { ...this.requireCache().stats(), pins: await this.requirePins().progress() }
  }

  private requireCache(): BlockCache {
    if (!this.cache) throw new Error('the folder is not open')
    return this.cache
  }

  private requirePins(): Pins {
    if (!this.pins) throw new Error('the folder is not open')
    return this.pins
  }
}

function tombstone(entry: Entry): EntryFields {
  return { type: entry.type, mode: entry.mode, mtime: Date.now(), size: 0, deleted: true }
}

function stripVersion(entry: Entry): EntryFields {
  const { vv: _vv, device: _device, ...fields } = entry
  return fields
}

function dominatedBy(v: VersionVector, base: VersionVector): boolean {
  const order = compare(v, base)
  return order === 'before' || order === 'equal'
}

/** open(2) flags that write: O_WRONLY or O_RDWR. */
export function opensForWrite(flags: number): boolean {
  return (flags & O_ACCMODE) !== 0
}

function sameStat(a: Stat, b: Stat): boolean {
  return a.type === b.type && a.mode === b.mode && a.size === b.size && a.mtime === b.mtime
}

function statOf(entry: Entry): Stat {
  const size = entry.type === 'dir' ? 4096 : entry.type === 'symlink' ? Buffer.byteLength(entry.target ?? '') : entry.size
  return { type: entry.type, mode: typeBits(entry.type) | entry.mode, size, mtime: entry.mtime }
}
