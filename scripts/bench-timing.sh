#!/usr/bin/env bash
# How much of a latency figure is the generator's own timing? `reactor
# bench echo` against epoll_echo (server on core 0, generator on core 1),
# in three ways of waiting, each ROUNDS times, alternating:
#   sleep   the default: a closed loop sleeps on poll's millisecond
#           timeout; an open loop on a timerfd armed for its next send
#   busy    --busy-poll: never sleeps, so waking costs nothing
#   old     (only with OLD_BIN=path) another reactor binary, e.g. one
#           built before the timerfd, for a before/after table
# Loads: open loop at 5,000 and 50,000 req/s over 100 connections, and a
# closed loop on one connection (one request in flight: a round trip).
# Prints one markdown row per run: schedule lag and latency percentiles,
# service time p50, and the generator's CPU (busy, and spinning idle).
#
#   scripts/bench-timing.sh            ROUNDS [3], SECS [4], PEERS_OUT,
#                                      REACTOR_BIN, OLD_BIN
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/perf-lib.sh
. "$here/perf-lib.sh" # and lib.sh
root=$(repo_root)
cd "$root"
case ${1:-} in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "unknown argument $1 (see --help)" ;;
esac
ROUNDS=${ROUNDS:-3} SECS=${SECS:-4} PEERS_OUT=${PEERS_OUT:-/tmp/reactor-peers}
[[ $ROUNDS =~ ^[1-9][0-9]?$ && $SECS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS 1..99, SECS whole seconds"
(($(nproc) >= 2)) || die "needs 2 cores (server on 0, load on 1)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-timing.XXXXXX")
# shellcheck disable=SC2016  # evaluated by the trap
install_cleanup 'rm -rf "$tmp"'
"$root/../shared/peers/build.sh" "$PEERS_OUT" >&2
reactor=$(reactor_bin)
[[ -x $reactor ]] || die "missing $reactor"
[[ -z ${OLD_BIN:-} || -x $OLD_BIN ]] || die "OLD_BIN $OLD_BIN is not executable"

port=$(free_ports 1)
spawn "$tmp/epoll_echo.log" taskset -c 0 "$PEERS_OUT/epoll_echo" "$port"
wait_tcp "$port" "$SPAWNED" 5 || die "epoll_echo does not accept"

modes=(sleep busy)
[[ -n ${OLD_BIN:-} ]] && modes=(old sleep busy)
echo "Machine: $(machine_desc); reactor at $(source_desc "$root"); load average $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| load | mode | round | lag p50 | lag p99 | latency p50 | p90 | p99 | p99.9 | service p50 | generator busy | spinning |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for load in "--rate 5000 -c 100" "--rate 50000 -c 100" "-c 1"; do
  for ((r = 1; r <= ROUNDS; r++)); do
    for mode in "${modes[@]}"; do
      bin=$reactor extra=()
      [[ $mode == old ]] && bin=$OLD_BIN
      [[ $mode == busy ]] && extra=(--busy-poll)
      # shellcheck disable=SC2086  # $load is several flags
      taskset -c 1 "$bin" bench echo "127.0.0.1:$port" --size 64 -d "$SECS" $load "${extra[@]}" \
        -q --json "$tmp/r.json" >/dev/null
      python3 - "$tmp/r.json" "$load" "$mode" "$r" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
def us(x):
    return "-" if x is None else (f"{x:.0f} us" if x >= 10 else f"{x:.1f} us")
lag = v.get("schedule_lag_us") or {}
lat, svc, g = v["latency_us"], v["service_time_us"], v["generator"]
spin = (g.get("thread_cpu_spin") or [0])[0]
assert v["errors"] == 0, f"errors: {v['errors_by_kind']}"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {us(lag.get('p50'))} | {us(lag.get('p99'))} | "
      f"{us(lat['p50'])} | {us(lat['p90'])} | {us(lat['p99'])} | {us(lat['p999'])} | {us(svc['p50'])} | "
      f"{100 * g['thread_cpu_busy'][0]:.0f}% | {100 * spin:.0f}% |")
EOF
    done
  done
done
