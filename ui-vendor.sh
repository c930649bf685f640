#!/usr/bin/env bash
# ui-vendor.sh — re-vendor the browser-side xterm.js files into assets/vendor/.
#
# The kterm binary embeds assets/ (rust-embed) and serves it with a strict CSP,
# so no CDN is used: the runtime files are copied here from the npm packages
# and committed. This script reproduces that copy with pinned versions.
# It needs node/npm and the npm registry; it installs into a throwaway temp dir
# (never into this repository) and copies only what the page loads at runtime:
#   xterm.js      <- @xterm/xterm/lib/xterm.js          (UMD build, global `Terminal`)
#   xterm.css     <- @xterm/xterm/css/xterm.css
#   addon-fit.js  <- @xterm/addon-fit/lib/addon-fit.js  (UMD build, global `FitAddon.FitAddon`)
#   xterm.LICENSE, addon-fit.LICENSE <- each package's LICENSE (MIT)
# Files are copied byte-for-byte (their trailing `sourceMappingURL` comments
# point at .map files that are deliberately not vendored).
#
# To upgrade: change the versions below, run `./ui-vendor.sh`, test the page.
set -euo pipefail

XTERM_VERSION=6.0.0
ADDON_FIT_VERSION=0.11.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/assets/vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm init -y >/dev/null
npm install --no-audit --no-fund --ignore-scripts --save-exact \
  "@xterm/xterm@$XTERM_VERSION" "@xterm/addon-fit@$ADDON_FIT_VERSION" >/dev/null

x="$tmp/node_modules/@xterm/xterm"
f="$tmp/node_modules/@xterm/addon-fit"

mkdir -p "$dest"
cp "$x/lib/xterm.js"       "$dest/xterm.js"
cp "$x/css/xterm.css"      "$dest/xterm.css"
cp "$x/LICENSE"            "$dest/xterm.LICENSE"
cp "$f/lib/addon-fit.js"   "$dest/addon-fit.js"
cp "$f/LICENSE"            "$dest/addon-fit.LICENSE"

echo "vendored @xterm/xterm@$XTERM_VERSION and @xterm/addon-fit@$ADDON_FIT_VERSION into $dest:"
ls -l "$dest"
