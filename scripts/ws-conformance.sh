#!/usr/bin/env bash
# WebSocket conformance (issue 8): tests/ws_conformance.py drives a real
# `reactor serve --http --chat --https` (ports from the OS) through the
# Python `websockets` library from PyPI and a raw socket: handshake (101
# and Sec-WebSocket-Accept; 400, 403, 426), fragmentation, ping/pong, close
# codes 1000, 1002, 1003, 1007, 1009, the server's keep-alive ping, wss://,
# and a WebSocket member and a TCP chat member hearing each other. Loopback
# only; about 10 s.
#
#   scripts/ws-conformance.sh              # every check
#   scripts/ws-conformance.sh -k close     # the checks named *close*
#
# Environment: BIN (default target/release/reactor, built if missing),
# VENV (default target/ws-venv: a virtualenv holding the pinned websockets,
# made if missing), TIMEOUT (s for the whole run, 180).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

# Pinned: the checks rely on this version's client API (websockets.sync).
WEBSOCKETS_VERSION=17.4
BIN=${BIN:-$(release_bin)}
VENV=${VENV:-$root/target/ws-venv}
TIMEOUT=${TIMEOUT:-180}

if [[ ! -x $BIN ]]; then
  (cd "$root" && cargo build --release --bin reactor)
fi

have_websockets() {
  "$VENV/bin/python" -c "import sys, websockets; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')" 2>/dev/null
}
if ! have_websockets; then
  log "installing websockets==$WEBSOCKETS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "websockets==$WEBSOCKETS_VERSION"
  have_websockets || die "websockets $WEBSOCKETS_VERSION not importable from $VENV"
fi

# The script starts and stops its own servers; timeout's SIGTERM makes it
# stop them too.
timeout -k 5 "$TIMEOUT" "$VENV/bin/python" "$root/tests/ws_conformance.py" --bin "$BIN" "$@"
