#!/usr/bin/env bash
# Fan-out beside Redis: `fanout_load` (../shared/peers) drives redis-server's
# pub/sub and reactor's chat with one workload (N receivers, one sender at
# R lines a second, 64-byte payloads) and reads each server's CPU time from
# /proc/PID/stat; this prints deliveries per server CPU-second and the
# delivery latency, for Redis and for chat at each `--chat-flush-delay`.
#
#   scripts/bench-fanout.sh
#   DELAYS="0 10ms 20ms" SHAPES="1000x100 10000x10" ROUNDS=3 SECS=10 scripts/bench-fanout.sh
#
# Rounds alternate the servers (redis, chat at each delay, redis, ...);
# the table gives medians over rounds, and the median of the per-round
# ratios chat/redis of deliveries per CPU-second. Server on core 0, load
# on core 1 (`taskset`). Environment: DELAYS ("0 10ms 20ms"), SHAPES
# (receivers x lines/s: "1000x100 10000x10"), ROUNDS (3), SECS (10),
# LEN (64), BIN (the release binary; built if missing), LOAD (the
# fanout_load binary; built from ../shared/peers/fanout_load.c if missing),
# SERVER_ARGS (extra `reactor serve` flags), NICE (run server and load at
# this niceness, e.g. -10 on a machine busy with builds: a late load
# generator sends lines in bursts, which coalesces them for any server and
# hides what is measured here). Every run must deliver every
# line in order (fanout_load exits 1 otherwise, and so does this).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

DELAYS=${DELAYS:-0 10ms 20ms}
SHAPES=${SHAPES:-1000x100 10000x10}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
LEN=${LEN:-64}
BIN=${BIN:-$(release_bin)}
SERVER_ARGS=${SERVER_ARGS:-}
NICE=${NICE:-0}
peers=$root/../shared/peers
command -v redis-server >/dev/null 2>&1 || die "redis-server is needed (../shared/peers/build.sh installs it)"
(($(nproc) >= 2)) || die "needs 2 cores (server on 0, load on 1)"
[[ -x $BIN ]] || (cd "$root" && cargo build --release --bin reactor)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-fanout.XXXXXX")
# shellcheck disable=SC2016  # evaluated by the trap
install_cleanup 'rm -rf "$tmp"'
LOAD=${LOAD:-$tmp/fanout_load}
if [[ ! -x $LOAD ]]; then
  cc -O2 -Wall -o "$LOAD" "$peers/fanout_load.c" || die "cannot build fanout_load"
fi
raise_nofile

# run SERVER N R: one fanout_load run against SERVER (redis, or a delay for
# chat); prints "deliveries_per_cpu_s p50_ms p99_ms".
run() {
  local server=$1 n=$2 r=$3 port srv out
  port=$(free_ports 1)
  if [[ $server == redis ]]; then
    spawn "$tmp/srv.log" nice -n "$NICE" taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 \
      --save '' --appendonly no --maxclients 15000
  else
    # shellcheck disable=SC2086  # SERVER_ARGS split on purpose
    spawn "$tmp/srv.log" nice -n "$NICE" taskset -c 0 "$BIN" serve --chat "127.0.0.1:$port" \
      --log-level warn --max-conns 15000 --chat-flush-delay "$server" $SERVER_ARGS
  fi
  srv=$SPAWNED
  wait_tcp "$port" "$srv" 20 || { cat "$tmp/srv.log" >&2; die "$server did not start"; }
  out=$tmp/load.out
  if command -v perf >/dev/null 2>&1; then
    perf stat -x, -o "$tmp/perf.out" -p "$srv" \
      -e syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto 2>/dev/null &
    perf_pid=$!
  fi
  if ! nice -n "$NICE" taskset -c 1 "$LOAD" "$([[ $server == redis ]] && echo redis || echo chat)" \
    127.0.0.1 "$port" -n "$n" -r "$r" -l "$LEN" -t "$SECS" --pid "$srv" >"$out" 2>&1; then
    cat "$out" >&2
    die "fanout_load failed against $server"
  fi
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    writes=$(awk -F, -v d="$((n * r * SECS))" '/sys_enter/ { s += $1 } END { printf "%.3f", s / d }' "$tmp/perf.out")
  fi
  stop_pid "$srv" TERM 10
  awk -v w="$writes" '
    /p50/ { for (i = 1; i <= NF; i++) { if ($i == "p50") p50 = $(i+1); if ($i == "p99") p99 = $(i+1) }
            u50 = $0; sub(/.*p50 [0-9.]+ /, "", u50); sub(/,.*/, "", u50)
            u99 = $0; sub(/.*p99 [0-9.]+ /, "", u99); sub(/,.*/, "", u99) }
    /deliveries per CPU-second/ { for (i = 1; i <= NF; i++) if ($(i+1) == "deliveries") { d = $i; gsub(",", "", d) } }
    function ms(v, u) { return u == "s" ? v * 1000 : u == "us" ? v / 1000 : v }
    END { printf "%s %.2f %.2f %s\n", d, ms(p50, u50), ms(p99, u99), w }' "$out"
}

printf '%-9s %-8s %14s %8s %9s %9s %12s\n' shape server "deliv/CPU-s" "x redis" "p50 ms" "p99 ms" "writes/deliv"
for shape in $SHAPES; do
  n=${shape%x*} r=${shape#*x}
  declare -A dps=() p50=() p99=() ratio=() wpd=()
  for ((round = 1; round <= ROUNDS; round++)); do
    for s in redis $DELAYS; do
      read -r d a b w < <(run "$s" "$n" "$r")
      dps[$s]+="$d " p50[$s]+="$a " p99[$s]+="$b " wpd[$s]+="$w "
      [[ $s == redis ]] && rd=$d || ratio[$s]+="$(awk -v a="$d" -v b="$rd" 'BEGIN { print a / b }') "
      log "round $round $shape $s: $d deliveries/CPU-s, p50 $a ms, p99 $b ms, $w writes/delivery"
    done
  done
  for s in redis $DELAYS; do
    # shellcheck disable=SC2086  # lists split on purpose
    printf '%-9s %-8s %14.0f %8s %9.2f %9.2f %12.3f\n' "$shape" "$s" "$(median ${dps[$s]})" \
      "$([[ $s == redis ]] && echo 1 || printf '%.2f' "$(median ${ratio[$s]})")" \
      "$(median ${p50[$s]})" "$(median ${p99[$s]})" "$(median ${wpd[$s]})"
  done
  unset dps p50 p99 ratio wpd
done
