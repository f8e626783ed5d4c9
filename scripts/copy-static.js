#!/usr/bin/env node
'use strict'
// Copies the web UI's static assets next to the compiled server (tsc copies only .ts).
const fs = require('fs')
const path = require('path')
const from = path.join(__dirname, '..', 'src', 'web', 'static')
const to = path.join(__dirname, '..', 'dist', 'web', 'static')
fs.rmSync(to, { recursive: true, force: true })
fs.cpSync(from, to, { recursive: true })
