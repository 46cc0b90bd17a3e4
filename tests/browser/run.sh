#!/usr/bin/env bash
# run.sh - the dashboard's browser tests (dashboard.test.mjs): installs the
# lockfile's npm packages into the build tree (npm ci, once per lockfile),
# then drives Debian's chromium. Missing chromium or node is a failure that
# says how to get them (make deps installs both), never a skip.
# Env: TCPOTA, PROXY (binaries), NODE_DIR (where node_modules goes), ARTIFACTS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

for tool in node npm; do
  command -v "$tool" > /dev/null || { echo "FAIL: $tool is missing; run make deps (as root) to install Debian's nodejs and npm" >&2; exit 1; }
done
[ -x "$CHROMIUM" ] || { echo "FAIL: $CHROMIUM is missing; run make deps (as root) to install Debian's chromium" >&2; exit 1; }

mkdir -p "$NODE_DIR"
if ! cmp -s "$here/package-lock.json" "$NODE_DIR/package-lock.json" || [ ! -d "$NODE_DIR/node_modules" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$NODE_DIR/"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) ||
    { echo "FAIL: npm ci of tests/browser/package-lock.json failed (is the npm registry reachable?)" >&2; exit 1; }
fi
cp "$here/dashboard.test.mjs" "$NODE_DIR/"
export CHROMIUM ARTIFACTS
exec node "$NODE_DIR/dashboard.test.mjs"
