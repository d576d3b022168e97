#!/usr/bin/env bash
# The browser test (issue 8): Debian's headless Chromium, driven by
# playwright-core from npm (no browser download), opens /chat in two pages
# and /dashboard in a third, against a real `reactor serve` on free loopback
# ports, with a TCP chat member in the same room. Checks that a line goes
# from page to page and to the TCP member and back, that system and error
# lines look different, that the dashboard's figures move while
# `reactor bench http -d 3s` runs, that the pages ride out a server restart
# (chat rejoins its nick and room), and that wss:// works from an https page.
# See tests/browser/chat-dashboard.test.mjs. About 30 s.
#
# Installs what is missing: Debian's chromium (apt), playwright-core
# (npm ci in tests/browser). Screenshots, server logs and the bench output
# go to ARTIFACTS.
#
# Environment: BIN (default target/release/reactor, built if missing),
# ARTIFACTS (default target/browser-artifacts, emptied first), CHROMIUM
# (/usr/bin/chromium), TIMEOUT (s for the test itself, 240).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

BIN=${BIN:-$(release_bin)}
ARTIFACTS=${ARTIFACTS:-$root/target/browser-artifacts}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
TIMEOUT=${TIMEOUT:-240}

if [[ ! -x $CHROMIUM ]]; then
  log "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done
log "$("$CHROMIUM" --version 2>/dev/null | head -1), node $(node --version)"
(cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
if [[ ! -x $BIN ]]; then
  (cd "$root" && cargo build --release --bin reactor)
fi

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-browser.XXXXXX")
pidfile=$tmp/pids
: >"$pidfile"

# The test records each process it starts (servers, bench) in $pidfile;
# should it be killed before it stops them, stop those pids here (only
# those, and only while they still run our binary).
stop_recorded() {
  local pid
  while read -r pid; do
    if [[ -z $pid ]] || ! alive "$pid"; then continue; fi
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$BIN" || continue
    log "stopping leftover pid $pid"
    kill -s KILL "$pid" 2>/dev/null || true
  done <"$pidfile"
}
# shellcheck disable=SC2016  # expanded when the trap runs
install_cleanup 'stop_recorded; rm -rf "$tmp"'

mapfile -t ports < <(free_ports 3)
log "ports: http ${ports[0]}, chat ${ports[1]}, https ${ports[2]}; artifacts in $ARTIFACTS"
# timeout signals its whole process group: node, the servers and Chromium.
BIN=$BIN HTTP_PORT=${ports[0]} CHAT_PORT=${ports[1]} HTTPS_PORT=${ports[2]} \
  ARTIFACTS=$ARTIFACTS CHROMIUM=$CHROMIUM PIDFILE=$pidfile \
  timeout -k 10 "$TIMEOUT" node "$root/tests/browser/chat-dashboard.test.mjs"

# The game page (tests/browser/game.test.mjs): two /game pages and the
# Python UDP client in one arena. One free port: HTTP on TCP, the game on
# UDP. About 10 s.
game_port=$(free_ports 1)
log "game: port $game_port (HTTP over TCP, the game over UDP)"
BIN=$BIN PORT=$game_port ROOT=$root ARTIFACTS=$ARTIFACTS CHROMIUM=$CHROMIUM PIDFILE=$pidfile \
  timeout -k 10 120 node "$root/tests/browser/game.test.mjs"
