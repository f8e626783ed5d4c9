'use strict'
// The web UI end to end in a real browser (Debian's chromium driven by playwright-core),
// against two devices on a loopback testnet, each with its own `tsyncfs web`: create a
// folder in A's UI, add it by secret in B's, see A's new file in B's page, pin it, see
// the rates move; and the refusals: a malformed secret, a mountpoint in use, a POST
// without CSRF token, a foreign Host header, a non-loopback listen without password,
// wrong passwords; and the password hashing and Host/Origin rules on their own.
// Screenshots go to test-artifacts/web/.
const test = require('brittle')
const path = require('path')
const fs = require('fs')
const http = require('http')
const { spawn } = require('child_process')
const { chromium } = require('playwright-core')
const { startTestnet, Device, waitFor, sh, exec, BIN, ROOT, RUN_DIR } = require('./helpers')

const ARTIFACTS = path.join(ROOT, 'test-artifacts', 'web')
fs.mkdirSync(ARTIFACTS, { recursive: true })

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run',
  '--no-default-browser-check', '--disable-default-apps', '--disable-sync', '--disable-extensions',
  '--disable-domain-reliability', '--disable-client-side-phishing-detection', '--disable-breakpad',
  '--metrics-recording-only', '--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication'
]

// Web servers are children of this process: never leave one behind, even on a crash.
const webServers = new Set()
const WEB_PIDS = path.join(RUN_DIR, 'run', 'web-servers')
fs.mkdirSync(WEB_PIDS, { recursive: true })
process.on('exit', () => { for (const child of webServers) try { child.kill('SIGKILL') } catch {} })

async function launchBrowser (t) {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS, timeout: 60000 })
  t.teardown(() => browser.close(), { order: -1 })
  return browser
}

/** Starts `tsyncfs web` for a device on a free loopback port; resolves its URL. */
function startWeb (t, device, extra = []) {
  const child = spawn(process.execPath, [BIN, 'web', '--listen', '127.0.0.1:0', '--data-dir', device.dataDir, ...extra], {
    env: device.env, stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => stopProcess(child))
  webServers.add(child)
  // If this file dies before its teardowns, the runner still finds the server by PID.
  const pidFile = path.join(WEB_PIDS, `${child.pid}.json`)
  fs.writeFileSync(pidFile, JSON.stringify({ pid: child.pid }))
  child.once('exit', () => { webServers.delete(child); fs.rmSync(pidFile, { force: true }) })
  let out = ''
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d
      const m = /serving the tsyncfs web UI at (http:\/\/\S+)/.exec(out)
      if (m) resolve(m[1])
    })
    child.stderr.on('data', (d) => { out += d })
    child.once('exit', (code) => reject(new Error(`tsyncfs web exited (${code}): ${out}`)))
  })
}

async function stopProcess (child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

async function shot (page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true })
}

/** A raw request (no browser), for headers a browser would not let us forge. */
function rawRequest (url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let data = ''
      res.on('data', (d) => { data += d })
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** A device with its own runtime dir, as two machines would have: each web server lists
 *  only its own device's mounts (below run/, where the test runner cleans up). */
function device (t, bootstrap, name) {
  const d = new Device(t, bootstrap, name)
  d.env = { ...d.env, TSYNCFS_RUNTIME_DIR: path.join(d.env.TSYNCFS_RUNTIME_DIR, `${process.pid}-${name}`) }
  return d
}

const card = (page, mountpoint) => page.locator(`.folder[data-mountpoint="${mountpoint}"]`)

async function addFolder (page, { secret, mountpoint }) {
  if (secret) {
    await page.check('#source-secret')
    await page.fill('#add-secret', secret)
  } else {
    await page.check('#source-create')
  }
  await page.fill('#add-mountpoint', mountpoint)
  await page.click('#add-submit')
  await page.waitForFunction(() => document.getElementById('add-busy').hidden, null, { timeout: 120000 })
}

/** Total bytes shown in a folder card's rates line, e.g. "down 3.0 MiB" -> bytes. */
function shownBytes (text, direction) {
  const m = new RegExp(`total up ([\\d.]+) (\\w+), down ([\\d.]+) (\\w+)`).exec(text)
  if (!m) return 0
  const units = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }
  return direction === 'up' ? Number(m[1]) * units[m[2]] : Number(m[3]) * units[m[4]]
}

test('web UI: create on A, add by secret on B, sync, pin, rates, events, unmount', { timeout: 420000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const a = device(t, bootstrap, 'webA')
  const b = device(t, bootstrap, 'webB')
  const [urlA, urlB] = await Promise.all([startWeb(t, a), startWeb(t, b)])
  const browser = await launchBrowser(t)
  const pageA = await browser.newPage()
  const pageB = await browser.newPage()
  await pageA.goto(urlA)
  await pageB.goto(urlB)
  await pageA.waitForSelector('#app:not([hidden])')

  // A: create a new folder at its mountpoint.
  await addFolder(pageA, { mountpoint: a.mnt })
  t.is(await pageA.textContent('#add-error'), '', 'no error creating the folder')
  await card(pageA, a.mnt).waitFor({ timeout: 30000 })
  t.ok((await sh(`mountpoint -q ${JSON.stringify(a.mnt)}`)).code === 0, 'A is mounted')
  await shot(pageA, '01-a-created')

  // A: a mountpoint in use is refused in the page.
  await addFolder(pageA, { mountpoint: a.mnt })
  t.ok(/already mounted/.test(await pageA.textContent('#add-error')), 'a mountpoint in use is refused with a clear message')
  t.is(await pageA.locator('.folder').count(), 1, 'and nothing else is mounted')
  await shot(pageA, '02-a-mountpoint-in-use')

  // A: the secrets are hidden until asked; the read-write one comes with a QR code.
  await card(pageA, a.mnt).locator('button.open').click()
  await pageA.click('button[data-tab="secrets"]')
  t.ok(await pageA.locator('#secret-view').isHidden(), 'no secret is shown before a click')
  t.is(await pageA.textContent('#secret-text'), '', 'nor is it in the page')
  await pageA.click('#show-readWrite')
  await pageA.waitForSelector('#secret-view:not([hidden])')
  const secret = (await pageA.textContent('#secret-text')).trim()
  t.ok(/^tsrw-[a-z2-7]+$/.test(secret), 'the read-write secret is shown on a click')
  t.ok(await pageA.locator('#secret-qr svg').count() === 1, 'with a QR code')
  await shot(pageA, '03-a-secret')
  await pageA.click('#show-readOnly')
  await pageA.waitForFunction(() => document.getElementById('secret-text').textContent.startsWith('tsro-'), null, { timeout: 10000 })
  t.pass('the read-only secret too')
  await pageA.click('#secret-hide')

  // B: a malformed secret is refused in the page and mounts nothing.
  await addFolder(pageB, { secret: secret.slice(0, -3), mountpoint: b.mnt })
  t.ok(/malformed secret/.test(await pageB.textContent('#add-error')), `a malformed secret is refused: "${await pageB.textContent('#add-error')}"`)
  t.is(await pageB.locator('.folder').count(), 0, 'and nothing is mounted')
  t.ok((await sh(`mountpoint -q ${JSON.stringify(b.mnt)}`)).code !== 0, 'B\'s mountpoint is untouched')
  await shot(pageB, '04-b-malformed-secret')

  // B: add the folder by its secret.
  await addFolder(pageB, { secret, mountpoint: b.mnt })
  t.is(await pageB.textContent('#add-error'), '', 'no error adding the folder by secret')
  await card(pageB, b.mnt).waitFor({ timeout: 30000 })
  await waitFor(async () => Number(await card(pageB, b.mnt).locator('.peers').textContent()) >= 1, { timeout: 60000, message: 'B to show a peer online' })
  t.pass('B shows A as a peer online')

  // The CLI's status and cache answer through the web server's API while it runs.
  const viaApi = JSON.parse((await b.cli(['status', b.mnt, '--json'])).stdout)
  t.is(viaApi.state, 'mounted', 'tsyncfs status answers through the HTTP API (its folder state)')
  t.ok(viaApi.transfer && viaApi.id, 'with the API\'s transfer counts and folder id')
  t.is(viaApi.peers.length, 1, 'and the same peers')
  const cacheViaApi = JSON.parse((await b.cli(['cache', b.mnt, '--json'])).stdout)
  t.ok(cacheViaApi.limit > 0 && cacheViaApi.mountpoint === b.mnt, 'tsyncfs cache answers through it too')

  // A writes a file; B's page lists it, partly local (nothing fetched yet).
  const size = 4 * 1024 * 1024
  await sh(`head -c ${size} /dev/urandom > ${JSON.stringify(a.p('big.bin'))}`)
  await card(pageB, b.mnt).locator('button.open').click()
  await pageB.click('button[data-tab="files"]')
  const row = pageB.locator('tr[data-path="/big.bin"]')
  await row.waitFor({ timeout: 60000 })
  t.pass('A\'s new file is listed in B\'s page')
  await shot(pageB, '05-b-file-listed')

  // Pin it: B fetches it whole; the page shows 100% and the rates move on both sides.
  await row.locator('button.pin').click()
  await pageB.waitForSelector('tr[data-path="/big.bin"] button.unpin', { timeout: 30000 })
  t.pass('the file shows as pinned')
  await waitFor(async () => /100%/.test(await row.locator('.local').textContent()), { timeout: 120000, message: 'the pinned file to be 100% local on B' })
  t.pass('the pinned file becomes 100% local')
  await waitFor(async () => shownBytes(await card(pageB, b.mnt).locator('.rates').textContent(), 'down') >= size, { timeout: 30000, message: 'B\'s download total to reach the file size' })
  await waitFor(async () => shownBytes(await card(pageA, a.mnt).locator('.rates').textContent(), 'up') >= size, { timeout: 30000, message: 'A\'s upload total to reach the file size' })
  t.pass('B shows the bytes downloaded and A the bytes uploaded')
  const peak = await pageB.evaluate(async () => {
    const folders = await (await fetch('/api/folders')).json()
    return Math.max(...folders[0].transfer.history.map((s) => s.down))
  })
  t.ok(peak > 0, `the rate history has a non-zero download rate (peak ${peak} B/s)`)
  // The chart is a line through one sample per second: over a fast link the whole file may
  // arrive within the first second of B's history, so wait for the next sample to be drawn.
  const drawn = await waitFor(async () => {
    const points = await card(pageB, b.mnt).locator('polyline.rate-down').getAttribute('points')
    const ys = (points || '').split(' ').filter(Boolean).map((p) => Number(p.split(',')[1]))
    return ys.length > 1 && Math.min(...ys) < Math.max(...ys)
  }, { timeout: 20000, message: 'the chart to draw the download' }).catch(() => false)
  t.ok(drawn, 'the chart draws the download rate (a line that rises off the baseline)')
  t.is((await sh(`cmp ${JSON.stringify(a.p('big.bin'))} ${JSON.stringify(b.p('big.bin'))}`)).code, 0, 'the content on B is A\'s')
  await shot(pageB, '06-b-pinned-rates')
  await shot(pageA, '07-a-rates')

  // The cache tab shows the pin and the limit.
  await pageB.click('button[data-tab="cache"]')
  await pageB.waitForSelector('dd[data-key="pinned paths"]')
  t.ok((await pageB.textContent('dd[data-key="pinned paths"]')).includes('/big.bin'), 'the cache tab lists the pin')
  t.ok(/GiB|MiB/.test(await pageB.textContent('dd[data-key="limit"]')), 'and the cache limit')

  // Unpin from the files tab.
  await pageB.click('button[data-tab="files"]')
  await pageB.locator('tr[data-path="/big.bin"] button.unpin').click()
  await pageB.waitForSelector('tr[data-path="/big.bin"] button.pin', { timeout: 30000 })
  t.pass('unpinned')

  // Events: a peer joined, the file arrived.
  await pageB.click('button[data-tab="events"]')
  await waitFor(async () => {
    const text = await pageB.textContent('#events-list')
    return text.includes('peer-joined') && text.includes('added /big.bin')
  }, { timeout: 30000, message: 'B\'s events to show the peer and the new file' })
  t.pass('B\'s events show the peer joining and the file added')
  // A new mtime with the same bytes is a change too, and is shown as one.
  await sh(`touch -d '2001-02-03 04:05:06' ${JSON.stringify(a.p('big.bin'))}`)
  await waitFor(async () => (await pageB.textContent('#events-list')).includes('changed /big.bin'),
    { timeout: 30000, message: 'B\'s events to show the file changed' })
  t.pass('B\'s events show the file changed when A set its mtime')
  await shot(pageB, '08-b-events')

  // Unmount B from its page.
  await card(pageB, b.mnt).locator('button.unmount').click()
  await waitFor(async () => (await pageB.locator('.folder').count()) === 0, { timeout: 60000, message: 'B\'s folder to disappear' })
  await waitFor(async () => (await sh(`mountpoint -q ${JSON.stringify(b.mnt)}`)).code !== 0, { timeout: 30000, message: 'B to be unmounted' })
  t.pass('unmounted from the page')
  await shot(pageB, '09-b-unmounted')

  // Apart, A and B both write note.txt; when they meet, B's events show the conflict copy.
  await sh(`printf 'from A' > ${JSON.stringify(a.p('note.txt'))}`)
  await a.stop()
  await addFolder(pageB, { secret, mountpoint: b.mnt })
  await card(pageB, b.mnt).waitFor({ timeout: 30000 })
  await sh(`printf 'from B, later' > ${JSON.stringify(b.p('note.txt'))}`)
  await a.mount(secret)
  await card(pageB, b.mnt).locator('button.open').click()
  await pageB.click('button[data-tab="events"]')
  await waitFor(async () => /conflict: conflict copy created: \/note\.sync-conflict-/.test(await pageB.textContent('#events-list')),
    { timeout: 90000, message: 'B\'s events to show the conflict copy' })
  t.pass('B\'s events show the conflict copy created when A and B met')
  await shot(pageB, '10-b-conflict-event')
})

test('web API refusals: CSRF, Host, non-loopback without password, wrong passwords', { timeout: 180000 }, async (t) => {
  const bootstrap = await startTestnet(t)
  const c = device(t, bootstrap, 'webC')
  const url = await startWeb(t, c)
  const browser = await launchBrowser(t)
  const page = await browser.newPage()
  await page.goto(url)
  await page.waitForSelector('#app:not([hidden])')

  const withoutToken = await page.evaluate(async () => {
    const res = await fetch('/api/folders', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ create: true, mountpoint: '/tmp/x' }) })
    return res.status
  })
  t.is(withoutToken, 403, 'a POST without the CSRF token is refused with 403')
  const wrongToken = await page.evaluate(async () => {
    const res = await fetch('/api/folders', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': 'nope' }, body: '{}' })
    return res.status
  })
  t.is(wrongToken, 403, 'a POST with a wrong CSRF token too')
  const noSession = await rawRequest(url + '/api/folders')
  t.is(noSession.status, 401, 'the API needs a session')
  const rebound = await rawRequest(url + '/api/session', { headers: { Host: 'attacker.example:80' } })
  t.is(rebound.status, 403, 'a foreign Host header (DNS rebinding) is refused')
  const page0 = await rawRequest(url + '/')
  t.ok(/default-src 'self'/.test(page0.headers['content-security-policy']), 'the page forbids assets from elsewhere')
  t.is(await c.pid(), null, 'no folder was mounted by the refused requests')

  // Listening beyond loopback without a password is refused before anything listens.
  const open = await exec(process.execPath, [BIN, 'web', '--listen', '0.0.0.0:0'], { env: c.env, timeout: 20000 })
  t.is(open.code, 2, 'a non-loopback listen without a password exits 2')
  t.ok(/needs a password/.test(open.stderr), `with a clear message: ${open.stderr.trim()}`)

  // With a password: a hash in the file, a login form, rate-limited wrong passwords.
  const hashed = await sh(`printf '%s' 'correct horse battery' | ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} web --hash-password`)
  t.ok(/^scrypt\$/.test(hashed.stdout.trim()), 'the password is stored as a scrypt hash')
  const pwFile = path.join(RUN_DIR, `web-pw-${process.pid}`)
  fs.writeFileSync(pwFile, hashed.stdout, { mode: 0o600 })
  const plain = path.join(RUN_DIR, `web-plain-${process.pid}`)
  fs.writeFileSync(plain, 'correct horse battery\n', { mode: 0o600 })
  const refused = await exec(process.execPath, [BIN, 'web', '--listen', '127.0.0.1:0', '--password-file', plain], { env: c.env, timeout: 20000 })
  t.is(refused.code, 2, 'a plain password in the file is refused')
  const secured = await startWeb(t, c, ['--password-file', pwFile])
  const login = await browser.newPage()
  await login.goto(secured)
  await login.waitForSelector('#login:not([hidden])')
  t.ok(await login.locator('#app').isHidden(), 'the app is hidden until logged in')
  const blocked = await login.evaluate(async () => (await fetch('/api/folders')).status)
  t.is(blocked, 401, 'the API answers nothing before login')
  await login.fill('#login-password', 'wrong password')
  await login.click('#login-form button')
  await login.waitForFunction(() => document.getElementById('login-error').textContent !== '')
  t.is(await login.textContent('#login-error'), 'wrong password', 'a wrong password is refused')
  await shot(login, '11-login-wrong')
  const statuses = await login.evaluate(async () => {
    const csrf = (await (await fetch('/api/session')).json()).csrfToken
    const out = []
    for (let i = 0; i < 6; i++) {
      const res = await fetch('/api/login', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: JSON.stringify({ password: 'guess' + i }) })
      out.push(res.status)
    }
    return out
  })
  t.ok(statuses.includes(429), `wrong passwords are rate-limited (${statuses.join(',')})`)

  // A fresh server (no failures recorded) lets the right password in.
  const secured2 = await startWeb(t, c, ['--password-file', pwFile])
  const ok = await browser.newPage()
  await ok.goto(secured2)
  await ok.waitForSelector('#login:not([hidden])')
  await ok.fill('#login-password', 'correct horse battery')
  await ok.click('#login-form button')
  await ok.waitForSelector('#app:not([hidden])', { timeout: 30000 })
  t.pass('the right password opens the app')
  await shot(ok, '12-logged-in')
})

test('web auth: scrypt hashes, Host and Origin rules', async (t) => {
  const auth = require('../dist/web/auth')
  const hash = await auth.hashPassword('correct horse battery')
  t.ok(auth.isPasswordHash(hash), 'a hash has the scrypt$N$r$p$salt$hash form')
  t.absent(hash.includes('correct horse'), 'and does not contain the password')
  t.ok(await auth.verifyPassword('correct horse battery', hash), 'the right password verifies')
  t.absent(await auth.verifyPassword('correct horse batterY', hash), 'a wrong one does not')
  t.ok(auth.hostAllowed('127.0.0.1:8888', true, 8888) && auth.hostAllowed('localhost:8888', true, 8888), 'loopback names are allowed on loopback')
  t.absent(auth.hostAllowed('evil.example:8888', true, 8888), 'another name is not (DNS rebinding)')
  t.absent(auth.hostAllowed('127.0.0.1:9999', true, 8888), 'nor another port')
  t.ok(auth.originAllowed('http://127.0.0.1:8888', '127.0.0.1:8888'), 'our own Origin is allowed')
  t.absent(auth.originAllowed('http://evil.example', '127.0.0.1:8888'), 'another Origin is not')
  const limiter = new auth.LoginLimiter()
  for (let i = 0; i < 4; i++) limiter.failed('1.2.3.4')
  t.is(limiter.retryAfterMs('1.2.3.4'), 0, 'four wrong passwords: no wait yet')
  limiter.failed('1.2.3.4')
  t.ok(limiter.retryAfterMs('1.2.3.4') > 0, 'the fifth makes the next attempt wait')
  t.is(limiter.retryAfterMs('5.6.7.8'), 0, 'per address')
})
