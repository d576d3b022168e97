#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind: repeatable on
# a noisy machine where seconds are not. The server runs under valgrind
# twice, once for N1 and once for N2 requests from `reactor bench` (10
# connections, closed loop); the difference of the two totals over N2 - N1
# is the cost of one request with startup and shutdown taken out.
#
#   scripts/callgrind.sh                 # echo (64-byte messages) and HTTP keep-alive GET /
#   WORKLOADS=http N1=2000 N2=12000 scripts/callgrind.sh
#   SERVER_ARGS="--access-log /tmp/a.log" WORKLOADS=http scripts/callgrind.sh
#   BIN=/tmp/old/target/release/reactor BENCH_BIN=target/release/reactor scripts/callgrind.sh
#   WORKLOADS=chat CONNS=101 N1=200 N2=1200 SERVER_ARGS="--chat-flush-delay 20ms" scripts/callgrind.sh
#
# chat is fan-out: CONNS members in one room, one of them sending RATE
# lines a second (open loop), N1 and N2 lines; its figure is per delivery
# (per line per receiver, CONNS - 1 receivers).
#
# Environment: WORKLOADS ("echo http"; also "chat"), N1 (2000), N2 (12000), CONNS (10),
# RATE (chat lines per second, 100), KEEP (a directory to keep the
# callgrind files in, for callgrind_annotate), BIN (the release binary,
# built if missing), BENCH_BIN (the binary whose `reactor bench` makes the
# load: BIN; another keeps the load the same when comparing builds),
# SERVER_ARGS (extra `reactor serve` flags). Loopback only; ports from the OS. Prints one line per workload:
# "<workload> <instructions per request> (<total N1> <total N2>)".
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

WORKLOADS=${WORKLOADS:-echo http}
N1=${N1:-2000}
N2=${N2:-12000}
BIN=${BIN:-$(release_bin)}
SERVER_ARGS=${SERVER_ARGS:-}
CONNS=${CONNS:-10}
RATE=${RATE:-100}
KEEP=${KEEP:-}
command -v valgrind >/dev/null 2>&1 || die "valgrind is needed"
[[ -x $BIN ]] || (cd "$root" && cargo build --release --bin reactor)
BENCH_BIN=${BENCH_BIN:-$BIN}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-callgrind.XXXXXX")
install_cleanup 'rm -rf "$tmp"'

# count WORKLOAD N: total instructions of one server run answering N requests.
count() {
  local workload=$1 n=$2 port out srv
  port=$(free_ports 1)
  out=$tmp/cg.$workload.$n
  # shellcheck disable=SC2086  # SERVER_ARGS split on purpose
  case $workload in
    echo) spawn "$tmp/log" valgrind --tool=callgrind --callgrind-out-file="$out" \
      "$BIN" serve --echo "127.0.0.1:$port" --log-level warn $SERVER_ARGS ;;
    http) spawn "$tmp/log" valgrind --tool=callgrind --callgrind-out-file="$out" \
      "$BIN" serve --http "127.0.0.1:$port" --log-level warn $SERVER_ARGS ;;
    chat) spawn "$tmp/log" valgrind --tool=callgrind --callgrind-out-file="$out" \
      "$BIN" serve --chat "127.0.0.1:$port" --log-level warn $SERVER_ARGS ;;
    *) die "unknown workload $workload (want echo, http or chat)" ;;
  esac
  srv=$SPAWNED
  wait_tcp "$port" "$srv" 60 || { cat "$tmp/log" >&2; die "server under valgrind did not start"; }
  case $workload in
    echo) "$BENCH_BIN" bench echo "127.0.0.1:$port" -c "$CONNS" -n "$n" --size 64 -q >/dev/null ;;
    http) "$BENCH_BIN" bench http "http://127.0.0.1:$port/" -c "$CONNS" -n "$n" -q >/dev/null ;;
    # Its verdict may be INVALID on a busy machine (the generator late):
    # what counts here is that every line arrived.
    chat) "$BENCH_BIN" bench chat "127.0.0.1:$port" -c "$CONNS" --senders 1 --rate "$RATE" \
      -n "$n" --timeout 10s -q >"$tmp/bench" 2>&1 || true
      grep -q '^  lost: 0$' "$tmp/bench" && grep -q '^Errors: 0$' "$tmp/bench" ||
        { cat "$tmp/bench" >&2; die "chat lost lines under valgrind"; } ;;
  esac
  stop_pid "$srv" TERM 60
  [[ -n $KEEP ]] && cp "$out" "$KEEP/"
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

for w in $WORKLOADS; do
  a=$(count "$w" "$N1")
  b=$(count "$w" "$N2")
  per=1
  [[ $w == chat ]] && per=$((CONNS - 1))
  awk -v w="$w" -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" -v per="$per" \
    'BEGIN { printf "%s %.0f (%s %s)\n", w, (b - a) / (n2 - n1) / per, a, b }'
done
