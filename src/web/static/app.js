// The tsyncfs web UI: plain DOM, no framework, every request through the JSON API.
'use strict'
;(function () {
  let csrf = document.querySelector('meta[name="csrf-token"]').content
  const state = { folders: [], selected: null, tab: 'files', filesPath: '/', eventsSince: 0, events: [] }
  const $ = (id) => document.getElementById(id)

  // --- the API ---

  async function api (method, path, body) {
    const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' }
    if (method !== 'GET') {
      opts.headers['Content-Type'] = 'application/json'
      opts.headers['X-CSRF-Token'] = csrf
      opts.body = JSON.stringify(body || {})
    }
    const res = await fetch(path, opts)
    const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }))
    if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`)
    return data
  }

  // --- formatting ---

  function bytes (n) {
    if (n === null || n === undefined) return '-'
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
    let i = 0
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
    return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
  }
  const percent = (local, size) => size > 0 ? Math.floor((local / size) * 1000) / 10 : 100
  function el (tag, attrs, ...children) {
    const node = document.createElement(tag)
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v
      else if (k === 'style') node.style.cssText = v // CSSOM, which the CSP allows (a style attribute it would not)
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v)
      else node.setAttribute(k, v)
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)))
    return node
  }

  // --- log in ---

  async function boot () {
    const session = await api('GET', '/api/session')
    csrf = session.csrfToken
    if (session.passwordRequired && !session.authenticated) {
      $('login').hidden = false
      return
    }
    start()
  }

  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault()
    $('login-error').textContent = ''
    try {
      const res = await api('POST', '/api/login', { password: $('login-password').value })
      csrf = res.csrfToken
      $('login').hidden = true
      start()
    } catch (err) {
      $('login-error').textContent = err.message
    }
  })

  function start () {
    $('app').hidden = false
    refresh()
    // Every 2 s: status walks the folder's index; the chart's samples are per second anyway.
    setInterval(refresh, 2000)
  }

  // --- adding a folder ---

  for (const radio of document.querySelectorAll('input[name=source]')) {
    radio.addEventListener('change', () => { $('secret-label').hidden = !$('source-secret').checked })
  }

  $('add-form').addEventListener('submit', async (e) => {
    e.preventDefault()
    $('add-error').textContent = ''
    $('add-ok').textContent = ''
    const create = $('source-create').checked
    const body = { create, mountpoint: $('add-mountpoint').value }
    if (!create) body.secret = $('add-secret').value
    $('add-submit').disabled = true
    $('add-busy').hidden = false
    try {
      const res = await api('POST', '/api/folders', body)
      $('add-ok').textContent = `mounted ${res.folderId} at ${res.mountpoint}`
      $('add-secret').value = ''
      if (res.id) state.selected = res.id
      await refresh()
    } catch (err) {
      $('add-error').textContent = err.message
    } finally {
      $('add-submit').disabled = false
      $('add-busy').hidden = true
    }
  })

  // --- the folders ---

  async function refresh () {
    try {
      state.folders = await api('GET', '/api/folders')
      $('connection').textContent = ''
    } catch (err) {
      $('connection').textContent = `cannot reach tsyncfs: ${err.message}`
      return
    }
    renderFolders()
    const selected = state.folders.find((f) => f.id === state.selected)
    $('detail').hidden = !selected
    if (selected) await refreshDetail(selected)
  }

  function renderFolders () {
    $('no-folders').hidden = state.folders.length > 0
    const list = $('folders')
    list.replaceChildren(...state.folders.map(folderCard))
  }

  function folderCard (f) {
    const peers = Array.isArray(f.peers) ? f.peers : []
    const rates = lastRates(f.transfer)
    const card = el('div', { class: 'folder' + (f.id === state.selected ? ' selected' : ''), 'data-folder': f.id, 'data-mountpoint': f.mountpoint },
      el('div', {},
        el('h3', {}, f.mountpoint),
        el('dl', {},
          el('dt', {}, 'folder'), el('dd', {}, `${f.folderId} (${f.kind || '?'})`),
          el('dt', {}, 'state'), el('dd', { class: 'state' }, f.state + (f.error ? `: ${f.error}` : '')),
          el('dt', {}, 'members'), el('dd', { class: 'members' }, f.members ?? '-'),
          el('dt', {}, 'peers online'), el('dd', { class: 'peers' }, peers.length),
          el('dt', {}, 'files'), el('dd', {}, `${f.files ?? '-'} in ${f.dirs ?? '-'} directories, ${f.conflicts ?? 0} conflicts`),
          el('dt', {}, 'local / total'), el('dd', { class: 'bytes' }, `${bytes(f.bytesLocal)} / ${bytes(f.bytesTotal)}`),
          el('dt', {}, 'partly local'), el('dd', { class: 'partial' }, partialText(f.partial)),
          el('dt', {}, 'rates'), el('dd', { class: 'rates' },
            el('span', { class: 'legend-up' }, `up ${bytes(rates.up)}/s`), ' ', el('span', { class: 'legend-down' }, `down ${bytes(rates.down)}/s`),
            el('span', { class: 'muted' }, ` (total up ${bytes(f.transfer?.up)}, down ${bytes(f.transfer?.down)})`))
        ),
        el('p', {},
          el('button', { type: 'button', class: 'open', onclick: () => select(f.id) }, 'Open'), ' ',
          el('button', { type: 'button', class: 'unmount', onclick: () => unmount(f) }, 'Unmount'))
      ),
      el('div', { class: 'chart' }, rateChart(f.transfer))
    )
    return card
  }

  function partialText (partial) {
    if (!Array.isArray(partial) || partial.length === 0) return 'none'
    return partial.slice(0, 5).map((p) => `${p.path} (${percent(p.local, p.size)}%)`).join(', ') + (partial.length > 5 ? `, ${partial.length - 5} more` : '')
  }

  function lastRates (transfer) {
    const h = transfer && transfer.history
    return h && h.length ? h[h.length - 1] : { up: 0, down: 0 }
  }

  /** Up and down bytes per second over the last two minutes, as two SVG polylines. */
  function rateChart (transfer) {
    const NS = 'http://www.w3.org/2000/svg'
    const W = 320; const H = 110; const N = 120
    const svg = document.createElementNS(NS, 'svg')
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`)
    svg.setAttribute('role', 'img')
    svg.setAttribute('aria-label', 'upload and download rates, last two minutes')
    const history = ((transfer && transfer.history) || []).slice(-N)
    const max = Math.max(1024, ...history.map((s) => Math.max(s.up, s.down)))
    const line = (key, color) => {
      const points = history.map((s, i) => `${((N - history.length + i) / (N - 1)) * W},${H - 14 - (s[key] / max) * (H - 24)}`)
      const poly = document.createElementNS(NS, 'polyline')
      poly.setAttribute('points', points.join(' '))
      poly.setAttribute('fill', 'none')
      poly.setAttribute('stroke', color)
      poly.setAttribute('stroke-width', '1.5')
      poly.setAttribute('class', `rate-${key}`)
      svg.append(poly)
    }
    line('down', '#3366cc')
    line('up', '#d2691e')
    const text = (x, y, anchor, content, color = '#666') => {
      const label = document.createElementNS(NS, 'text')
      label.setAttribute('x', String(x)); label.setAttribute('y', String(y)); label.setAttribute('text-anchor', anchor)
      label.setAttribute('font-size', '10'); label.setAttribute('fill', color)
      label.textContent = content
      svg.append(label)
    }
    const baseline = document.createElementNS(NS, 'line')
    baseline.setAttribute('x1', '0'); baseline.setAttribute('x2', String(W))
    baseline.setAttribute('y1', String(H - 14)); baseline.setAttribute('y2', String(H - 14)); baseline.setAttribute('stroke', '#ccc')
    svg.append(baseline)
    text(4, 12, 'start', `${bytes(max)}/s`)
    text(4, H - 3, 'start', '2 min ago')
    text(W - 4, H - 3, 'end', 'now')
    text(W - 46, 12, 'end', '— up', '#d2691e')
    text(W - 4, 12, 'end', '— down', '#3366cc')
    return svg
  }

  async function unmount (f) {
    $('detail-error').textContent = ''
    try {
      await api('POST', `/api/folders/${f.id}/unmount`, {})
      if (state.selected === f.id) state.selected = null
      await refresh()
    } catch (err) {
      $('add-error').textContent = `unmounting ${f.mountpoint}: ${err.message}`
    }
  }

  // --- one folder: files, cache, secrets, events ---

  function select (id) {
    if (state.selected !== id) {
      state.filesPath = '/'
      state.eventsSince = 0
      state.events = []
      hideSecret()
    }
    state.selected = id
    refresh()
  }

  for (const tab of document.querySelectorAll('.tab')) {
    tab.addEventListener('click', () => { state.tab = tab.dataset.tab; refresh() })
  }

  async function refreshDetail (f) {
    $('detail-title').textContent = f.mountpoint
    for (const t of document.querySelectorAll('.tab')) t.classList.toggle('active', t.dataset.tab === state.tab)
    for (const body of document.querySelectorAll('.tab-body')) body.hidden = body.id !== `tab-${state.tab}`
    try {
      if (state.tab === 'files') await renderFiles(f)
      if (state.tab === 'cache') await renderCache(f)
      if (state.tab === 'events') await renderEvents(f)
      $('detail-error').textContent = ''
    } catch (err) {
      $('detail-error').textContent = err.message
    }
  }

  async function renderFiles (f) {
    const listing = await api('GET', `/api/folders/${f.id}/files?path=${encodeURIComponent(state.filesPath)}`)
    const crumbs = [el('a', { class: 'dir', onclick: () => { state.filesPath = '/'; refresh() } }, f.mountpoint)]
    let acc = ''
    for (const part of listing.path.split('/').filter(Boolean)) {
      acc += '/' + part
      const target = acc
      crumbs.push(' / ', el('a', { class: 'dir', onclick: () => { state.filesPath = target; refresh() } }, part))
    }
    $('files-path').replaceChildren(...crumbs)
    const rows = listing.items.map((item) => {
      const name = item.type === 'dir'
        ? el('a', { class: 'dir', onclick: () => { state.filesPath = item.path; refresh() } }, item.name + '/')
        : item.name
      const pct = percent(item.local, item.size)
      const local = item.type === 'file'
        ? [el('span', { class: 'bar' }, el('span', { style: `width:${pct}%` })), `${pct}%`]
        : ['']
      const pin = el('button', { type: 'button', class: item.pinned ? 'unpin' : 'pin', onclick: () => pinToggle(f, item) }, item.pinned ? 'Unpin' : 'Pin')
      return el('tr', { 'data-path': item.path },
        el('td', {}, name), el('td', { class: 'num' }, item.type === 'dir' ? '' : bytes(item.size)),
        el('td', { class: 'local' }, ...local), el('td', {}, pin))
    })
    if (listing.truncated) rows.push(el('tr', {}, el('td', { colspan: '4', class: 'muted' }, 'listing cut short')))
    $('files-table').tBodies[0].replaceChildren(...rows)
  }

  async function pinToggle (f, item) {
    $('detail-error').textContent = ''
    try {
      await api('POST', `/api/folders/${f.id}/${item.pinned ? 'unpin' : 'pin'}`, { path: item.path })
      await refresh()
    } catch (err) {
      $('detail-error').textContent = err.message
    }
  }

  async function renderCache (f) {
    const c = await api('GET', `/api/folders/${f.id}/cache`)
    const rows = [
      ['limit', c.limit === null ? 'none (keep all)' : bytes(c.limit)],
      ['local', bytes(c.localBytes)],
      ['read copies', bytes(c.copyBytes)],
      ['pinned', bytes(c.pinnedBytes)],
      ['evictable', bytes(c.evictableBytes)],
      ['pinned paths', (c.pins.paths.join(', ') || '-') + ` (${bytes(c.pins.bytesLocal)} of ${bytes(c.pins.bytesTotal)} local)`],
      ['hit rate', `${(c.hitRate * 100).toFixed(1)}% (${c.hits} hits, ${c.misses} misses)`]
    ]
    $('cache-list').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { 'data-key': k }, v)]))
  }

  async function renderEvents (f) {
    // A remount at the same mountpoint is a new daemon, whose events count from 1 again.
    if (state.eventsPid !== f.pid) {
      state.eventsPid = f.pid
      state.eventsSince = 0
      state.events = []
    }
    const fresh = await api('GET', `/api/folders/${f.id}/events?since=${state.eventsSince}`)
    if (fresh.length) {
      state.events = state.events.concat(fresh).slice(-200)
      state.eventsSince = fresh[fresh.length - 1].seq
    }
    $('events-list').replaceChildren(...state.events.slice().reverse().map((e) =>
      el('li', { class: `event ${e.kind}` }, `${new Date(e.time).toLocaleTimeString()} ${e.kind}: ${e.message}`)))
  }

  // --- secrets: fetched only on a click, one kind at a time ---

  let shownSecret = ''
  for (const button of document.querySelectorAll('[data-secret]')) {
    button.addEventListener('click', async () => {
      $('detail-error').textContent = ''
      try {
        const res = await api('POST', `/api/folders/${state.selected}/secrets`, { kind: button.dataset.secret })
        showSecret(res.kind, res.secret)
      } catch (err) {
        $('detail-error').textContent = err.message
      }
    })
  }

  function showSecret (kind, secret) {
    const names = { readWrite: 'read-write secret (grants write access)', readOnly: 'read-only secret', encrypted: 'encrypted secret (for an untrusted backup box)' }
    shownSecret = secret
    $('secret-kind').textContent = names[kind]
    $('secret-text').textContent = secret
    $('secret-copied').textContent = ''
    const qr = window.qrcode(0, 'M')
    qr.addData(secret)
    qr.make()
    $('secret-qr').innerHTML = qr.createSvgTag({ cellSize: 4, margin: 4, scalable: true })
    $('secret-view').hidden = false
  }

  function hideSecret () {
    shownSecret = ''
    $('secret-text').textContent = ''
    $('secret-qr').replaceChildren()
    $('secret-view').hidden = true
  }
  $('secret-hide').addEventListener('click', hideSecret)

  $('secret-copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(shownSecret)
    } catch {
      // No clipboard API over plain http on a remote address: copy the selection instead.
      const range = document.createRange()
      range.selectNodeContents($('secret-text'))
      getSelection().removeAllRanges()
      getSelection().addRange(range)
      document.execCommand('copy')
    }
    $('secret-copied').textContent = 'copied'
  })

  boot().catch((err) => { document.body.prepend(el('p', { class: 'error' }, `tsyncfs: ${err.message}`)) })
})()
