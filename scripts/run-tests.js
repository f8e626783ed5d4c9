#!/usr/bin/env node
'use strict'
// Runs every test file in its own process with a deadline, counts brittle's top-level
// results, cleans up whatever a crashed test left mounted, and ends with the line
// "N passed, N failed".
const path = require('path')
const fs = require('fs')
const os = require('os')
const { spawn, execFileSync } = require('child_process')

const ROOT = path.join(__dirname, '..')
const FILE_TIMEOUT_MS = Number(process.env.TSYNCFS_TEST_FILE_TIMEOUT || 600000)
const only = process.argv.slice(2)
const files = (only.length ? only : fs.readdirSync(path.join(ROOT, 'test')).filter((f) => f.endsWith('.test.js')).sort().map((f) => path.join('test', f)))
const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsyncfs-test-'))

function runFile (file) {
  return new Promise((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, [path.join(ROOT, file)], {
      env: { ...process.env, TSYNCFS_TEST_DIR: runDir },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = ''
    child.stdout.on('data', (d) => { out += d; process.stdout.write(d) })
    child.stderr.on('data', (d) => process.stderr.write(d))
    const timer = setTimeout(() => {
      console.log(`# ${file}: timed out after ${FILE_TIMEOUT_MS / 1000} s`)
      child.kill('SIGKILL')
    }, FILE_TIMEOUT_MS)
    child.on('exit', (code) => {
      clearTimeout(timer)
      const passed = (out.match(/^ok \d+/gm) || []).length
      let failed = (out.match(/^not ok \d+/gm) || []).length
      if (code !== 0 && failed === 0) failed = 1 // crashed or timed out outside a test
      console.log(`# ${file}: ${passed} passed, ${failed} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`)
      resolve({ passed, failed })
    })
  })
}

/** After a failure, the daemons' logs say what happened inside them. */
function printDaemonLogs () {
  const found = []
  const walk = (dir, depth) => {
    if (depth > 4) return
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory() && !e.name.startsWith('mnt')) walk(p, depth + 1)
      else if (e.name === 'daemon.log') found.push(p)
    }
  }
  try { walk(runDir, 0) } catch {}
  for (const log of found) {
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n')
    console.log(`# --- ${path.relative(runDir, log)} (last 40 lines)`)
    for (const line of lines.slice(-40)) console.log('# ' + line)
  }
}

/** Detach mounts and stop daemons that the tests of this run left behind, by PID. */
function cleanup () {
  const runtime = path.join(runDir, 'run')
  // Tests of several devices give each its own runtime dir below run/ (and the web test
  // records its servers' PIDs in run/web-servers/).
  const dirs = fs.existsSync(runtime) ? [runtime, ...fs.readdirSync(runtime, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => path.join(runtime, e.name))] : []
  for (const dir of dirs) {
    for (const f of fs.readdirSync(dir)) {
      if (!f.endsWith('.json')) continue
      try {
        const reg = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'))
        try { process.kill(reg.pid, 'SIGKILL') } catch {}
      } catch {}
    }
  }
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && m.startsWith(runDir))
  for (const m of mounts) try { execFileSync('fusermount', ['-uz', m]) } catch {}
  // Network namespaces the discovery tests made (their processes first, by PID).
  const netns = path.join(runDir, 'netns')
  for (const ns of fs.existsSync(netns) ? fs.readFileSync(netns, 'utf8').split('\n').filter(Boolean) : []) {
    try {
      for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL') } catch {}
      }
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
    } catch {}
  }
  fs.rmSync(runDir, { recursive: true, force: true })
}

async function main () {
  let passed = 0
  let failed = 0
  for (const file of files) {
    const r = await runFile(file)
    passed += r.passed
    failed += r.failed
  }
  if (failed > 0) printDaemonLogs()
  cleanup()
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed > 0 || passed === 0 ? 1 : 0)
}

main()
