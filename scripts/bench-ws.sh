#!/usr/bin/env bash
# WebSocket figures: chat fan-out to browser-like members beside the same
# fan-out to TCP members, and memory per idle WebSocket member.
#
#   scripts/bench-ws.sh [OUT.md]
#
# Fan-out: one server (--http and --chat) pinned to core 0; `reactor bench
# ws` and `reactor bench chat` pinned to core 1, alternating (ws, chat, ws,
# chat, ...), each with MEMBERS members of which one sends RATE lines/s
# (every line goes to the other MEMBERS-1), for DUR. Reported per round:
# deliveries/s, p50/p99 fan-out latency (from each line's intended send
# time), losses, and the generator's verdict on itself; then the medians.
#
# Memory: a fresh server per measurement; N connections held by `reactor
# bench idle --pid`: WebSocket members (upgrade request, then silent; pings
# off) and TCP chat members (each sends `/help`), bytes of server RSS growth per
# connection.
#
# Environment (defaults in brackets):
#   MEMBERS [1000]  RATE [100]  DUR [5s]  ROUNDS [3]  N [10000]
#   SKIP_BUILD [0]  REACTOR_BIN
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root=$(repo_root)
cd "$root"

MEMBERS=${MEMBERS:-1000} RATE=${RATE:-100} DUR=${DUR:-5s} ROUNDS=${ROUNDS:-3} N=${N:-10000}
SKIP_BUILD=${SKIP_BUILD:-0}
out_file=${1:-}
raise_nofile
(( $(ulimit -n) > N + 100 )) || die "open-files limit $(ulimit -n) too low for N=$N"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-ws.XXXXXX")
install_cleanup 'rm -rf "$tmp"'
if [[ $SKIP_BUILD != 1 ]]; then
  log "building reactor (release)"
  cargo build --release --quiet >&2
fi
reactor=${REACTOR_BIN:-$(release_bin)}
[[ -x $reactor ]] || die "missing $reactor"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"

upgrade='GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'

# start_server: a fresh server on core 0; sets SRV, P_HTTP, P_CHAT.
start_server() {
  local -a ports
  mapfile -t ports < <(free_ports 2)
  P_HTTP=${ports[0]} P_CHAT=${ports[1]}
  spawn "$tmp/serve.log" taskset -c 0 "$reactor" serve \
    --http "127.0.0.1:$P_HTTP" --chat "127.0.0.1:$P_CHAT" \
    --max-conns $((N + 1000)) --ws-ping 0 --idle-timeout 0 --log-level info
  SRV=$SPAWNED
  wait_log "$tmp/serve.log" "chat listening on" "$SRV" 10 ||
    die "server did not start: $(cat "$tmp/serve.log")"
}

# field FILE EXPR: a number from a bench JSON file.
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

rows=()
start_server
for ((r = 1; r <= ROUNDS; r++)); do
  for kind in ws chat; do
    json=$tmp/$kind-$r.json
    if [[ $kind == ws ]]; then
      target=(ws "ws://127.0.0.1:$P_HTTP/ws")
    else
      target=(chat "127.0.0.1:$P_CHAT")
    fi
    taskset -c 1 "$reactor" bench "${target[@]}" -c "$MEMBERS" --senders 1 \
      --rate "$RATE" -d "$DUR" --warmup 1s --timeout 5s -q --json "$json" >/dev/null
    rps=$(field "$json" "round(d['requests_per_sec'])")
    p50=$(field "$json" "d['latency_us']['p50']")
    p99=$(field "$json" "d['latency_us']['p99']")
    lost=$(field "$json" "d.get('workload_counters',{}).get('lost',0)")
    errs=$(field "$json" "d['errors']")
    valid=$(field "$json" "'valid' if d.get('valid', True) else 'INVALID: ' + '; '.join(d.get('invalid_reasons', []))")
    log "round $r $kind: ${rps} deliveries/s, p50 ${p50}us, p99 ${p99}us, lost $lost, errors $errs, $valid"
    rows+=("| $r | $kind | $rps | $p50 | $p99 | $lost | $errs | $valid |")
    echo "$kind $rps $p50 $p99" >>"$tmp/fanout.txt"
  done
done
stop_pid "$SRV"

# median KIND COLUMN: the median over the rounds of one column.
median() {
  awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$tmp/fanout.txt" | sort -n |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# idle KIND HELLO: server RSS growth per held connection, in bytes.
idle() {
  local kind=$1 hello=$2 json=$tmp/idle-$1.json port
  start_server
  port=$P_HTTP
  [[ $kind == chat ]] && port=$P_CHAT
  taskset -c 1 "$reactor" bench idle "127.0.0.1:$port" -c "$N" --hello "$hello" \
    --pid "$SRV" -d 3s -q --json "$json" >/dev/null
  stop_pid "$SRV"
  field "$json" "d['workload_counters']['rss_growth_per_conn_bytes']"
}
ws_idle=$(idle ws "$upgrade")
chat_idle=$(idle chat '/help\n')
log "idle: WebSocket member ${ws_idle} B, TCP chat member ${chat_idle} B"

{
  echo "Fan-out: $MEMBERS members, 1 sender at $RATE lines/s ($((MEMBERS - 1)) deliveries a line), $DUR per round, server on core 0, load on core 1; $(uname -r), $(nproc) cores, $(date -u +%F)."
  echo
  echo "| round | members | deliveries/s | p50 us | p99 us | lost | errors | generator |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Medians: WebSocket $(median ws 2) deliveries/s, p50 $(median ws 3) us, p99 $(median ws 4) us; TCP chat $(median chat 2) deliveries/s, p50 $(median chat 3) us, p99 $(median chat 4) us."
  echo
  echo "Idle ($N connections each, server RSS growth per connection): WebSocket member ${ws_idle} B; TCP chat member ${chat_idle} B."
} | tee "${out_file:-/dev/null}"
