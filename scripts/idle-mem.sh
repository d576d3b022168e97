#!/usr/bin/env bash
# Memory per idle connection: reactor's echo and chat against epoll_echo
# (and tokio-echo), 10,000 connections each, with ../shared/peers/idle_conns.py.
# Greet closes every connection after its greeting, so for greet the script
# checks instead that the server holds no connection once greeted.
#
#   scripts/idle-mem.sh [OUT.md]
#
# Every measurement uses a fresh server (so memory freed by an earlier one
# cannot hide growth). Prints a markdown table (and writes it to OUT.md).
#
# Environment (defaults in brackets):
#   N [10000]   idle connections per measurement (the script's own process
#               holds N fds, the server N more: keep N under the fd limit)
#   CHAT_HELLO ['hi\n']  what each chat connection sends first
#   MAX_CONNS [15000]  reactor --max-conns
#   TOKIO [1]   also measure tokio-echo (0: skip)
#   PEERS_OUT [/tmp/reactor-peers]  SKIP_BUILD [0]  REACTOR_BIN  as in bench-echo.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root=$(repo_root)
cd "$root"

N=${N:-10000} CHAT_HELLO=${CHAT_HELLO:-'hi\n'} MAX_CONNS=${MAX_CONNS:-15000}
TOKIO=${TOKIO:-1} PEERS_OUT=${PEERS_OUT:-/tmp/reactor-peers} SKIP_BUILD=${SKIP_BUILD:-0}
out_file=${1:-}
idle_py=$root/../shared/peers/idle_conns.py
[[ -f $idle_py ]] || die "missing $idle_py"

raise_nofile
(( $(ulimit -n) > N + 100 )) || die "open-files limit $(ulimit -n) too low for N=$N"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-idle.XXXXXX")
install_cleanup 'rm -rf "$tmp"'

if [[ $SKIP_BUILD != 1 ]]; then
  log "building peers into $PEERS_OUT"
  "$root/../shared/peers/build.sh" "$PEERS_OUT" >&2
  log "building reactor (release)"
  cargo build --release --quiet >&2
fi
reactor=${REACTOR_BIN:-$(release_bin)}
[[ -x $reactor ]] || die "missing $reactor"
[[ -x $PEERS_OUT/epoll_echo ]] || die "missing $PEERS_OUT/epoll_echo"

rows=()   # markdown table rows

# start_server KIND: a fresh server; sets SRV_PID and SRV_PORT (the port of
# the service to measure: KIND is reactor-greet, reactor-echo, reactor-chat,
# epoll_echo or tokio-echo).
start_server() {
  local kind=$1 pg pe pc
  local -a ports
  mapfile -t ports < <(free_ports 3)
  pg=${ports[0]} pe=${ports[1]} pc=${ports[2]}
  case $kind in
    reactor-*)
      spawn "$tmp/$kind.log" "$reactor" serve --greet "127.0.0.1:$pg" --echo "127.0.0.1:$pe" \
        --chat "127.0.0.1:$pc" --max-conns "$MAX_CONNS" --log-level warn
      case $kind in reactor-greet) SRV_PORT=$pg ;; reactor-echo) SRV_PORT=$pe ;; *) SRV_PORT=$pc ;; esac ;;
    epoll_echo) spawn "$tmp/$kind.log" "$PEERS_OUT/epoll_echo" "$pe"; SRV_PORT=$pe ;;
    tokio-echo) spawn "$tmp/$kind.log" "$PEERS_OUT/tokio-echo" "127.0.0.1:$pe"; SRV_PORT=$pe ;;
  esac
  SRV_PID=$SPAWNED
  # readiness: the measured port accepts (a greet probe just gets greeted)
  wait_tcp "$SRV_PORT" "$SRV_PID" 10 || { cat "$tmp/$kind.log" >&2; die "$kind did not start"; }
}

# measure KIND HELLO: idle_conns.py against a fresh server; samples the
# server's fd count meanwhile to show how many connections it really held.
measure() {
  local kind=$1 hello=$2 ipid base peak=0 fds rc=0 line
  start_server "$kind"
  base=$(fd_count "$SRV_PID")
  local -a args=("$idle_py" "$SRV_PID" "$SRV_PORT" "$N")
  local shown=none
  if [[ -n $hello ]]; then args+=(--hello "$hello"); shown="\`$hello\`"; fi
  log "$kind: idle_conns.py $N ${hello:+--hello '$hello'}"
  timeout -k 5 240 python3 "${args[@]}" >"$tmp/idle.out" 2>&1 &
  ipid=$!
  while alive "$ipid"; do
    fds=$(fd_count "$SRV_PID")
    if ((fds > peak)); then peak=$fds; fi
    sleep 0.2
  done
  wait "$ipid" || rc=$?
  line=$(tail -n 1 "$tmp/idle.out")
  log "$kind: $line"
  if ((rc == 0)) && [[ $line =~ RSS\ ([0-9]+)\ -\>\ ([0-9]+)\ KiB,\ (-?[0-9]+)\ bytes ]]; then
    rows+=("| $kind | $shown | $N | ${BASH_REMATCH[1]} → ${BASH_REMATCH[2]} | $((peak - base)) | **${BASH_REMATCH[3]} B** |")
  else
    rows+=("| $kind | $shown | $N | FAILED (rc $rc): ${line//|/\\|} | $((peak - base)) | n/a |")
  fi
  alive "$SRV_PID" || log "$kind: server died"
  stop_pid "$SRV_PID" TERM 10
}

# greet_check: N clients connect and read the greeting, then keep their
# sockets open; the server must close every one of them by itself.
greet_check() {
  start_server reactor-greet
  log "reactor-greet: $N clients read the greeting and stay connected"
  timeout -k 5 120 python3 - "$SRV_PID" "$SRV_PORT" "$N" >"$tmp/greet.out" <<'EOF' || true
import os, socket, sys, time
pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
fds = lambda: len(os.listdir(f"/proc/{pid}/fd"))
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
time.sleep(0.3)
base, rss0 = fds(), rss()
socks, ok, peak = [], 0, base
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    got = b""
    try:
        while len(got) < 24:
            b = s.recv(64)
            if not b: break
            got += b
    except OSError:
        pass
    ok += got == b"Thank you for connecting"
    socks.append(s)                 # keep our end open: never send FIN
    if i % 500 == 0: peak = max(peak, fds())
t0 = time.time()
while fds() > base and time.time() - t0 < 15:
    time.sleep(0.1)
held, waited = fds() - base, time.time() - t0
eof = 0                             # the server's FIN reached every client?
for s in socks:
    s.settimeout(0.5)
    try:
        if s.recv(64) == b"": eof += 1
    except OSError:
        pass
print(f"{ok} {held} {waited:.1f} {peak - base} {rss0} {rss()} {eof}")
EOF
  local ok held waited peak r0 r1 eof
  if read -r ok held waited peak r0 r1 eof <"$tmp/greet.out" 2>/dev/null && [[ -n $eof ]]; then
    log "reactor-greet: greetings ok $ok/$N, connections held after ${waited}s: $held, peak $peak, EOF seen $eof/$N"
    rows+=("| reactor-greet | none (reads greeting) | $N | $r0 → $r1 | $peak | **server holds $held of $N after ${waited} s** (greetings ok $ok, FIN seen $eof) |")
  else
    log "reactor-greet: check failed: $(cat "$tmp/greet.out")"
    rows+=("| reactor-greet | none | $N | FAILED | n/a | n/a |")
  fi
  stop_pid "$SRV_PID" TERM 10
}

# chat_rooms_check: like idle_conns.py, but each member moves to a room of
# its own (`/join rI`) before the next connects, so no line fans out to the
# others: the RSS growth is the idle cost of a member alone. (In the lobby,
# every join notice goes to everyone already there: N^2/2 lines.)
chat_rooms_check() {
  start_server reactor-chat
  log "reactor-chat: $N members, each joins its own room"
  timeout -k 5 180 python3 - "$SRV_PID" "$SRV_PORT" "$N" >"$tmp/rooms.out" <<'EOF' || true
import os, socket, sys, time
pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
fds = lambda: len(os.listdir(f"/proc/{pid}/fd"))
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
time.sleep(0.3)
base, rss0 = fds(), rss()
socks, ok = [], 0
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"/join r%d\n" % i)
    s.settimeout(5)
    got = b""
    try:
        while b"* you joined" not in got:
            b = s.recv(4096)
            if not b: break
            got += b
    except OSError:
        pass
    ok += b"* you joined" in got
    socks.append(s)
time.sleep(1.0)
print(f"{ok} {fds() - base} {rss0} {rss()}")
EOF
  local ok held r0 r1
  if read -r ok held r0 r1 <"$tmp/rooms.out" 2>/dev/null && [[ -n $r1 ]]; then
    log "reactor-chat rooms: joined $ok/$N, held $held, RSS $r0 -> $r1 KiB"
    rows+=("| reactor-chat, own room each | \`/join rI\n\` | $N | $r0 → $r1 | $held | **$(( (r1 - r0) * 1024 / N )) B** (joined $ok) |")
  else
    log "reactor-chat rooms: check failed: $(cat "$tmp/rooms.out")"
    rows+=("| reactor-chat, own room each | \`/join rI\n\` | $N | FAILED | n/a | n/a |")
  fi
  stop_pid "$SRV_PID" TERM 10
}

measure reactor-echo 'hi\n'
measure reactor-chat "$CHAT_HELLO"
chat_rooms_check
greet_check
measure epoll_echo 'hi\n'
if [[ $TOKIO == 1 && -x $PEERS_OUT/tokio-echo ]]; then measure tokio-echo 'hi\n'; fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then commit+="+dirty"; fi
{
  echo "# Idle connections: server RSS growth per connection"
  echo
  echo "$N connections per row, each to a fresh server, via \`../shared/peers/idle_conns.py\`"
  echo "(sends the hello, reads the reply, idles 1 s, compares VmRSS). \"conns held\" is the"
  echo "server's peak fd count minus its count before. The greet and own-room rows use the"
  echo "script's own client (same method: RSS before, connect all, 1 s idle, RSS after)."
  echo "commit $commit, Linux $(uname -r)."
  echo
  echo "| server | hello | clients | RSS before → after (KiB) | conns held (peak) | per connection |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >"$tmp/table.md"
cat "$tmp/table.md"
if [[ -n $out_file ]]; then cp "$tmp/table.md" "$out_file"; log "table written to $out_file"; fi
