#!/usr/bin/env bash
# WebSocket echo beside tokio-tungstenite: reactor's /ws/echo against
# ../shared/peers/tungstenite-echo, side by side, and memory per idle echo
# connection of each (beside reactor's chat /ws).
#
#   scripts/bench-ws-echo.sh [OUT.md]
#
# Throughput: for each message size, ROUNDS rounds; in each, both servers
# are measured once, each fresh and pinned to core 0, driven by `reactor
# bench ws --echo` pinned to core 1 (CONNS connections, depth 1, DUR,
# every answer's bytes checked), the order alternating (A B, B A, ...).
# Per run: messages/s and messages per server CPU-second (the server's
# utime+stime from /proc/PID/stat over the measured window, `--pid`).
# Reported: every run, then per size the medians of the per-round ratios
# reactor / tungstenite.
#
# Idle memory: a fresh server per row; ../shared/peers/idle_conns.py opens
# N connections, each sending the upgrade request and reading the 101,
# then idle; the server's RSS growth per connection.
#
# Environment (defaults in brackets):
#   SIZES ["64 16k"]  CONNS [100]  DUR [5s]  ROUNDS [5]  N [10000]
#   PEERS_OUT [/tmp/reactor-peers]  SKIP_BUILD [0]  REACTOR_BIN
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root=$(repo_root)
cd "$root"

SIZES=${SIZES:-"64 16k"} CONNS=${CONNS:-100} DUR=${DUR:-5s} ROUNDS=${ROUNDS:-5} N=${N:-10000}
PEERS_OUT=${PEERS_OUT:-/tmp/reactor-peers} SKIP_BUILD=${SKIP_BUILD:-0}
out_file=${1:-}
idle_py=$root/../shared/peers/idle_conns.py
raise_nofile
(( $(ulimit -n) > N + 100 )) || die "open-files limit $(ulimit -n) too low for N=$N"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-ws-echo.XXXXXX")
install_cleanup 'rm -rf "$tmp"'
if [[ $SKIP_BUILD != 1 ]]; then
  log "building peers into $PEERS_OUT"
  "$root/../shared/peers/build.sh" "$PEERS_OUT" >&2
  log "building reactor (release)"
  cargo build --release --quiet >&2
fi
reactor=${REACTOR_BIN:-$(release_bin)}
[[ -x $reactor ]] || die "missing $reactor"
tung=$PEERS_OUT/tungstenite-echo
[[ -x $tung ]] || die "missing $tung (../shared/peers/build.sh)"

# start KIND: a fresh server on core 0; sets SRV, PORT, URLPATH.
start() {
  PORT=$(free_ports 1)
  case $1 in
    reactor | reactor-chat)
      spawn "$tmp/$1.log" taskset -c 0 "$reactor" serve --http "127.0.0.1:$PORT" \
        --max-conns $((N + 1000)) --log-level warn
      URLPATH=/ws/echo
      [[ $1 == reactor-chat ]] && URLPATH=/ws ;;
    tungstenite)
      spawn "$tmp/$1.log" taskset -c 0 "$tung" "127.0.0.1:$PORT"
      URLPATH=/ ;;
  esac
  SRV=$SPAWNED
  wait_tcp "$PORT" "$SRV" 10 || die "$1 did not start: $(cat "$tmp/$1.log")"
}

# field FILE EXPR: a value from a bench JSON file (python expression on `j`).
field() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# run KIND SIZE ROUND: one measured run; prints "rps per_cpu cpu_util errors valid".
run() {
  local kind=$1 size=$2 json=$tmp/$1-$2-$3.json
  start "$kind"
  taskset -c 1 "$reactor" bench ws "ws://127.0.0.1:$PORT$URLPATH" --echo --size "$size" \
    -c "$CONNS" -d "$DUR" --timeout 5s --pid "$SRV" -q --json "$json" >"$tmp/bench.out" 2>&1 || true
  stop_pid "$SRV" TERM 5
  [[ -s $json ]] || die "$kind $size: no result: $(tail -5 "$tmp/bench.out")"
  field "$json" '"%.0f %.0f %.2f %d %s" % (j["requests_per_sec"], j["server"]["requests_per_cpu_sec"] or 0, j["server"]["cpu_util"], j["errors"], j["valid"])'
}

rows=() summary=()
for size in $SIZES; do
  ratios_rps=() ratios_cpu=()
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order=(reactor tungstenite); else order=(tungstenite reactor); fi
    declare -A got=()
    for kind in "${order[@]}"; do
      got[$kind]=$(run "$kind" "$size" "$r")
      log "size $size round $r $kind: ${got[$kind]}"
    done
    read -r a_rps a_cpu a_util a_err a_valid <<<"${got[reactor]}"
    read -r b_rps b_cpu b_util b_err b_valid <<<"${got[tungstenite]}"
    rr=$(awk -v a="$a_rps" -v b="$b_rps" 'BEGIN {printf "%.3f", a / b}')
    rc=$(awk -v a="$a_cpu" -v b="$b_cpu" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')
    ratios_rps+=("$rr") ratios_cpu+=("$rc")
    rows+=("| $size | $r | ${order[0]} | $a_rps | $b_rps | $rr | $a_cpu | $b_cpu | $rc | $a_util / $b_util | $a_err / $b_err | $a_valid / $b_valid |")
    unset got
  done
  summary+=("| $size | $(median "${ratios_rps[@]}") | $(median "${ratios_cpu[@]}") |")
done

# idle KIND: RSS growth per idle connection after the upgrade.
idle_rows=()
for kind in reactor reactor-chat tungstenite; do
  start "$kind"
  hello="GET $URLPATH HTTP/1.1\\r\\nHost: bench\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n"
  line=$(timeout -k 5 240 python3 "$idle_py" "$SRV" "$PORT" "$N" --hello "$hello" | tail -1)
  log "idle $kind: $line"
  idle_rows+=("| $kind ($URLPATH) | $N | ${line#*: } |")
  stop_pid "$SRV" TERM 10
done

commit=$(git rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then commit+="+dirty"; fi
{
  echo "Commit $commit, Linux $(uname -r); server on core 0, \`reactor bench ws --echo\` on core 1,"
  echo "$CONNS connections, depth 1, $DUR per run, $ROUNDS rounds per size, order alternating."
  echo
  echo "| size | round | first | reactor msg/s | tungstenite msg/s | ratio | reactor msg per server CPU-s | tungstenite msg per server CPU-s | ratio | server CPU util (r / t) | errors (r / t) | generator verdict valid (r / t) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "| size | median ratio, msg/s | median ratio, msg per server CPU-s |"
  echo "|---|---|---|"
  printf '%s\n' "${summary[@]}"
  echo
  echo "| server (endpoint) | idle connections | RSS growth (idle_conns.py) |"
  echo "|---|---|---|"
  printf '%s\n' "${idle_rows[@]}"
} >"$tmp/table.md"
cat "$tmp/table.md"
if [[ -n $out_file ]]; then cp "$tmp/table.md" "$out_file"; log "table written to $out_file"; fi
