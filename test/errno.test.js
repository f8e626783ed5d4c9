'use strict'
// On a real mount, failing operations fail with the errno a program expects.
const test = require('brittle')
const fs = require('fs').promises
const { startTestnet, Device, newSecret, sh } = require('./helpers')

/** Asserts that `promise` rejects with errno `code` (one of `code` if an array). */
async function errno (t, promise, code, message) {
  const codes = Array.isArray(code) ? code : [code]
  try {
    await promise
    t.fail(`${message}: succeeded, expected ${codes.join(' or ')}`)
  } catch (err) {
    if (codes.includes(err.code)) t.pass(`${message}: ${err.code}`)
    else t.fail(`${message}: got ${err.code || err.message}, expected ${codes.join(' or ')}`)
  }
}

test('failing operations report the right errno', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')
  await a.mount(await newSecret())
  const p = (rel) => a.p(rel)

  await fs.writeFile(p('file.txt'), 'content')
  await fs.mkdir(p('dir'))
  await fs.mkdir(p('full'))
  await fs.writeFile(p('full/inside'), 'x')
  await fs.mkdir(p('empty'))
  await fs.symlink('file.txt', p('link'))

  // ENOENT
  await errno(t, fs.stat(p('missing')), 'ENOENT', 'stat of a missing file')
  await errno(t, fs.lstat(p('missing/deeper')), 'ENOENT', 'lstat below a missing directory')
  await errno(t, fs.readFile(p('missing')), 'ENOENT', 'open of a missing file')
  await errno(t, fs.open(p('missing'), 'r+'), 'ENOENT', 'open for writing of a missing file without O_CREAT')
  await errno(t, fs.unlink(p('missing')), 'ENOENT', 'unlink of a missing file')
  await errno(t, fs.rmdir(p('missing')), 'ENOENT', 'rmdir of a missing directory')
  await errno(t, fs.rename(p('missing'), p('other')), 'ENOENT', 'rename of a missing file')
  await errno(t, fs.rename(p('file.txt'), p('missing/file.txt')), 'ENOENT', 'rename into a missing directory')
  await errno(t, fs.readlink(p('missing')), 'ENOENT', 'readlink of a missing path')
  await errno(t, fs.mkdir(p('missing/sub')), 'ENOENT', 'mkdir under a missing parent')
  await errno(t, fs.writeFile(p('missing/new.txt'), 'x'), 'ENOENT', 'create under a missing parent')
  await errno(t, fs.symlink('x', p('missing/l')), 'ENOENT', 'symlink under a missing parent')
  await errno(t, fs.readdir(p('missing')), 'ENOENT', 'readdir of a missing directory')
  await errno(t, fs.truncate(p('missing'), 0), 'ENOENT', 'truncate of a missing file')
  await errno(t, fs.chmod(p('missing'), 0o600), 'ENOENT', 'chmod of a missing file')
  await errno(t, fs.utimes(p('missing'), new Date(), new Date()), 'ENOENT', 'utimes of a missing file')
  await fs.symlink('nowhere', p('dangling'))
  await errno(t, fs.stat(p('dangling')), 'ENOENT', 'stat through a dangling symlink')
  t.is(await fs.readlink(p('dangling')), 'nowhere', 'a dangling symlink still reads')

  // EEXIST
  await errno(t, fs.mkdir(p('dir')), 'EEXIST', 'mkdir of an existing directory')
  await errno(t, fs.mkdir(p('file.txt')), 'EEXIST', 'mkdir over an existing file')
  await errno(t, fs.open(p('file.txt'), 'wx'), 'EEXIST', 'open with O_CREAT|O_EXCL of an existing file')
  await errno(t, fs.open(p('dir'), 'wx'), 'EEXIST', 'open with O_CREAT|O_EXCL of an existing directory')
  await errno(t, fs.symlink('target', p('file.txt')), 'EEXIST', 'symlink over an existing file')
  await errno(t, fs.symlink('target', p('link')), 'EEXIST', 'symlink over an existing symlink')
  await errno(t, fs.symlink('target', p('dir')), 'EEXIST', 'symlink over an existing directory')

  // ENOTDIR
  await errno(t, fs.mkdir(p('file.txt/sub')), 'ENOTDIR', 'mkdir below a file')
  await errno(t, fs.writeFile(p('file.txt/new'), 'x'), 'ENOTDIR', 'create below a file')
  await errno(t, fs.readdir(p('file.txt')), 'ENOTDIR', 'readdir of a file')
  await errno(t, fs.rmdir(p('file.txt')), 'ENOTDIR', 'rmdir of a file')
  await errno(t, fs.stat(p('file.txt/x')), 'ENOTDIR', 'stat below a file')
  await errno(t, fs.rename(p('dir'), p('file.txt')), 'ENOTDIR', 'rename a directory over a file')

  // EISDIR. Linux's unlink(2) of a directory is EISDIR (POSIX allows EPERM); the VFS
  // answers it before asking the filesystem, as it does for opening a directory to write.
  await errno(t, fs.open(p('dir'), 'w'), 'EISDIR', 'open a directory for writing')
  await errno(t, fs.open(p('dir'), 'r+'), 'EISDIR', 'open a directory read-write')
  await errno(t, fs.readFile(p('dir')), 'EISDIR', 'read a directory as a file')
  await errno(t, fs.unlink(p('dir')), 'EISDIR', 'unlink of a directory')
  await errno(t, fs.rename(p('file.txt'), p('dir')), 'EISDIR', 'rename a file over a directory')
  await errno(t, fs.truncate(p('dir'), 0), 'EISDIR', 'truncate a directory')

  // ENOTEMPTY
  await errno(t, fs.rmdir(p('full')), 'ENOTEMPTY', 'rmdir of a non-empty directory')
  await errno(t, fs.rename(p('dir'), p('full')), 'ENOTEMPTY', 'rename a directory over a non-empty directory')

  // EINVAL
  await fs.mkdir(p('dir/sub'))
  await errno(t, fs.rename(p('dir'), p('dir/sub/dir')), 'EINVAL', 'rename a directory into its own subdirectory')
  await errno(t, fs.rename(p('dir'), p('dir/inside')), 'EINVAL', 'rename a directory into itself')
  await errno(t, fs.readlink(p('file.txt')), 'EINVAL', 'readlink of a regular file')
  await errno(t, fs.readlink(p('dir')), 'EINVAL', 'readlink of a directory')

  // ENAMETOOLONG: statfs says names have at most 255 bytes, so longer ones are refused
  const long = 'n'.repeat(256)
  await errno(t, fs.writeFile(p(long), 'x'), 'ENAMETOOLONG', 'create with a 256-byte name')
  await errno(t, fs.mkdir(p(long)), 'ENAMETOOLONG', 'mkdir with a 256-byte name')
  await errno(t, fs.symlink('x', p(long)), 'ENAMETOOLONG', 'symlink with a 256-byte name')
  await errno(t, fs.rename(p('file.txt'), p('dir/' + long)), 'ENAMETOOLONG', 'rename to a 256-byte name')
  await errno(t, fs.writeFile(p('é'.repeat(128)), 'x'), 'ENAMETOOLONG', 'create with 128 two-byte characters')
  await fs.writeFile(p('m'.repeat(255)), 'max')
  t.is(await fs.readFile(p('m'.repeat(255)), 'utf8'), 'max', 'a 255-byte name works')
  await fs.unlink(p('m'.repeat(255)))

  // hard links are not supported
  await errno(t, fs.link(p('file.txt'), p('hardlink')), 'EPERM', 'link (hard links are not supported)')

  // Nothing a failed operation touched changed.
  t.is(await fs.readFile(p('file.txt'), 'utf8'), 'content', 'file.txt unchanged')
  t.is(await fs.readFile(p('full/inside'), 'utf8'), 'x', 'full/inside unchanged')
  t.alike((await fs.readdir(p('dir'))).sort(), ['sub'], 'dir holds only what was made in it')
  t.is(await fs.readlink(p('link')), 'file.txt', 'link unchanged')
  t.alike((await fs.readdir(a.mnt)).sort(), ['dangling', 'dir', 'empty', 'file.txt', 'full', 'link'], 'no stray entries in the root')

  // What does work: replacing an empty directory by rename, removing an empty directory.
  await fs.rename(p('dir'), p('empty'))
  t.alike(await fs.readdir(p('empty')), ['sub'], 'rename a directory over an empty one replaces it')
  await errno(t, fs.stat(p('dir')), 'ENOENT', 'the renamed directory is gone from its old name')
  await fs.rmdir(p('empty/sub'))
  await fs.rmdir(p('empty'))
  await errno(t, fs.stat(p('empty')), 'ENOENT', 'rmdir of an empty directory removes it')
})

test('df and stat -f on the mount; the kernel reads ahead 1 MiB on it', { timeout: 300000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = new Device(t, bootstrap, 'A')
  await a.mount(await newSecret())
  await fs.writeFile(a.p('some.bin'), Buffer.alloc(1024 * 1024, 7))
  const { folderId } = await a.status()

  const df = await sh(`df -P -k ${JSON.stringify(a.mnt)}`)
  t.is(df.code, 0, 'df exits 0 ' + df.stderr)
  const lines = df.stdout.trim().split('\n')
  t.is(lines.length, 2, 'df prints a header and one line')
  const cols = (lines[1] || '').trim().split(/\s+/)
  t.is(cols[0], `tsyncfs:${folderId}`, 'the filesystem column names the folder')
  t.is(cols[cols.length - 1], a.mnt, 'the line is for the mountpoint')
  const [size, used, avail] = cols.slice(1, 4).map(Number)
  t.ok(Number.isInteger(size) && size > 0, `size > 0 (${size} KiB)`)
  t.ok(Number.isInteger(used) && used >= 0 && used <= size, `0 <= used <= size (${used} of ${size})`)
  t.ok(Number.isInteger(avail) && avail >= 0 && avail <= size, `0 <= avail <= size (${avail})`)
  t.ok(/^\d+%$/.test(cols[4]), 'a percentage of use')

  // The mount's read-ahead is raised from the kernel's 128 KiB (src/fs/mount.ts).
  const dev = (await sh(`mountpoint -d ${JSON.stringify(a.mnt)}`)).stdout.trim()
  const readAhead = await fs.readFile(`/sys/class/bdi/${dev}/read_ahead_kb`, 'utf8').catch((err) => err.message)
  t.is(readAhead.trim(), '1024', `read_ahead_kb of the mount's bdi ${dev}`)

  const dfi = await sh(`df -P -i ${JSON.stringify(a.mnt)}`)
  t.is(dfi.code, 0, 'df -i exits 0 ' + dfi.stderr)
  const icols = (dfi.stdout.trim().split('\n')[1] || '').trim().split(/\s+/)
  const [inodes, iused] = icols.slice(1, 3).map(Number)
  t.ok(inodes > 0 && iused >= 0 && iused <= inodes, `inode numbers are sane (${iused} of ${inodes})`)

  const st = await sh(`stat -f ${JSON.stringify(a.mnt)}`)
  t.is(st.code, 0, 'stat -f exits 0 ' + st.stderr)
  const total = Number((st.stdout.match(/Blocks: Total: (\d+)/) || [])[1])
  const free = Number((st.stdout.match(/Free: (\d+)/) || [])[1])
  t.ok(total > 0, `stat -f reports blocks (${total})`)
  t.ok(free <= total, 'free <= total')
  t.ok(/Namelen: 255/.test(st.stdout), 'the maximal name length is 255')
  const fmt = await sh(`stat -f -c '%S %b %T' ${JSON.stringify(a.mnt)}`)
  t.is(fmt.code, 0)
  t.ok(Number(fmt.stdout.split(' ')[0]) > 0, 'a block size > 0')

  // statfs from node agrees
  const sfs = await fs.statfs(a.mnt)
  t.ok(sfs.blocks > 0 && sfs.bfree <= sfs.blocks && sfs.bavail <= sfs.blocks, 'fs.statfs numbers are sane')
})
