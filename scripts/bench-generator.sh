#!/usr/bin/env bash
# Is `reactor bench` as strong a load generator as the independent tools?
# Side by side against the same server, one thread each, load on core 1,
# server on core 0, rounds alternating A B A B:
#   - echo: `reactor bench echo` vs `epoll_load` against `epoll_echo`
#     (100 connections, 64-byte messages, depth 1 and 16);
#   - HTTP: `reactor bench http` vs `wrk -t1 -c100` against nginx (one
#     worker, ../shared/peers/nginx.conf, port 7080).
# Prints each run and the median of the per-round ratios (reactor bench /
# other tool). Environment: ROUNDS [3], SECS [4], PEERS_OUT, SKIP_BUILD,
# REACTOR_BIN [$CARGO_TARGET_DIR or target, /release/reactor].
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root=$(repo_root)
cd "$root"
ROUNDS=${ROUNDS:-3} SECS=${SECS:-4}
PEERS_OUT=${PEERS_OUT:-/tmp/reactor-peers} SKIP_BUILD=${SKIP_BUILD:-0}
if [[ $SKIP_BUILD != 1 ]]; then
  bash "$root/../shared/peers/build.sh" "$PEERS_OUT" >/dev/null
  cargo build --release -q
fi
R=${REACTOR_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/reactor}
[[ -x $R ]] || die "missing $R"
if (exec 3<>/dev/tcp/127.0.0.1/7080) 2>/dev/null; then
  die "port 7080 is taken; nginx (../shared/peers/nginx.conf) needs it"
fi
raise_nofile
port=$(free_ports 1)
taskset -c 0 "$PEERS_OUT/epoll_echo" "$port" >/dev/null 2>&1 &
ep=$!
ng=$(mktemp -d "${TMPDIR:-/tmp}/reactor-ng.XXXXXX")
trap 'kill $ep 2>/dev/null || true; nginx -p "$ng" -c "$root/../shared/peers/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$ng"' EXIT
sleep 0.3


echo "| load | round | reactor bench | other tool | ratio |"
echo "|---|---|---|---|---|"
for d in 1 16; do
  ratios=()
  for r in $(seq "$ROUNDS"); do
    a=$(taskset -c 1 "$R" bench echo "127.0.0.1:$port" -c 100 --size 64 --depth "$d" -d "$SECS" -q |
      awk '/^Requests\/sec:/ {print $2}')
    b=$(taskset -c 1 "$PEERS_OUT/epoll_load" 127.0.0.1 "$port" -c 100 -l 64 -d "$d" -t "$SECS" 2>&1 |
      awk '/msgs\/s/ {print $1}' | tail -1)
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}')
    ratios+=("$ratio")
    echo "| echo depth $d (vs epoll_load) | $r | $a | $b | $ratio |"
  done
  echo "| **echo depth $d median** | | | | **$(median "${ratios[@]}")** |"
done

mkdir -p "$ng/logs"
taskset -c 0 nginx -p "$ng" -c "$root/../shared/peers/nginx.conf" 2>/dev/null &
sleep 0.5
ratios=()
for r in $(seq "$ROUNDS"); do
  a=$(taskset -c 1 "$R" bench http http://127.0.0.1:7080/ -c 100 -d "$SECS" -q |
    awk '/^Requests\/sec:/ {print $2}')
  b=$(taskset -c 1 wrk -t1 -c100 -d"${SECS}s" http://127.0.0.1:7080/ | awk '/^Requests\/sec:/ {print $2}')
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}')
  ratios+=("$ratio")
  echo "| http keep-alive (vs wrk -t1 -c100, nginx) | $r | $a | $b | $ratio |"
done
echo "| **http median** | | | | **$(median "${ratios[@]}")** |"
