'use strict'
// Applies text patches to a dependency's file, for the postinstall patch scripts. The
// patches apply to the file's own text, kept beside it on the first run, so that a changed
// patch replaces the old one instead of stacking on it. True if the file changed.
const fs = require('fs')
const path = require('path')

function patch (file, patches, mark) {
  const pristine = file + '.orig'
  const current = fs.readFileSync(file, 'utf8')
  if (!fs.existsSync(pristine)) {
    if (current.includes(mark)) throw new Error(`${file} was patched by an older tsyncfs: reinstall it (npm ci)`)
    fs.writeFileSync(pristine, current)
  }
  let text = fs.readFileSync(pristine, 'utf8')
  for (const [from, to] of patches) {
    if (!text.includes(from)) throw new Error(`${path.basename(file)} changed: cannot find "${from.trim()}" to patch`)
    text = text.replace(from, to)
  }
  if (text !== current) fs.writeFileSync(file, text)
  return text !== current
}

module.exports = { patch }
