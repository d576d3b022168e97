#!/usr/bin/env bash
# The chat bus measured: rooms spread over server processes that share one
# Redis (`reactor serve --bus`), beside the same members on one server
# without a bus, and Redis's own PUBLISH rate beside the bus's.
#
#   scripts/bench-bus.sh [OUT.md]
#
# One Redis (no persistence) and SERVERS bus servers, plus one server with
# no bus, all on core 0; every load generator on core 1. They stay up for
# the whole run; each measurement is a fresh set of members.
#
# (a) Fan-out latency and (b) server CPU per delivered member-line: for
#     each rate in RATES (lines/s in total, 3 senders), ROUNDS rounds; each
#     round runs `reactor bench chat` once with MEMBERS members spread over
#     the SERVERS bus servers (--server each; deliveries counted local and
#     remote apart) and once with the same MEMBERS on the server with no
#     bus, the order alternating (A B, B A, ...). Each run: WARMUP, then
#     DUR measured; latency from each line's intended send time to each
#     member's receipt; server CPU from /proc/PID/stat utime+stime over the
#     measured window (--pid, every server process of the run added up),
#     divided by the deliveries in it. Per round the ratios bus / no bus;
#     reported: every run, then medians of the ratios.
# (c) Throughput: one member on each bus server, each one a sender, so
#     every line crosses the bus (published once, delivered by Redis to
#     every server's subscriber, its own included, which drops it); rates
#     stepped through TPUT_RATES for TPUT_DUR each. Lines published and
#     received from the servers' /stats (bus_published, bus_received) over
#     the run, lost and dropped counted. Beside it, redis-benchmark
#     PUBLISH of a message the size of the bus's envelopes with 3
#     subscribers on the channel (one a server), before and after the
#     steps: 3 clients (one a server) pipelining 16, and its default 50
#     clients with no pipeline: publishes/s, and deliveries (3 per publish)
#     checked by counting what the subscribers read.
#
# Environment (defaults in brackets):
#   MEMBERS [1000]  SERVERS [3]  RATES ["10 100"]  ROUNDS [3]  DUR [8s]
#   WARMUP [2s]  TPUT_RATES ["10000 20000 40000 60000 80000"]  TPUT_DUR [4s]
#   RB_N [300000]  SKIP_BUILD [0]  REACTOR_BIN
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root=$(repo_root)
cd "$root"

MEMBERS=${MEMBERS:-1000} SERVERS=${SERVERS:-3} RATES=${RATES:-"10 100"} ROUNDS=${ROUNDS:-3}
DUR=${DUR:-8s} WARMUP=${WARMUP:-2s} TPUT_RATES=${TPUT_RATES:-"10000 20000 40000 60000 80000"}
TPUT_DUR=${TPUT_DUR:-4s} RB_N=${RB_N:-300000} SKIP_BUILD=${SKIP_BUILD:-0}
out_file=${1:-}
raise_nofile
(( $(ulimit -n) > MEMBERS + 200 )) || die "open-files limit $(ulimit -n) too low for $MEMBERS members"
for tool in taskset redis-server redis-benchmark redis-cli curl; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-bench-bus.XXXXXX")
install_cleanup 'rm -rf "$tmp"'
if [[ $SKIP_BUILD != 1 ]]; then
  log "building reactor (release)"
  cargo build --release --quiet >&2
fi
reactor=${REACTOR_BIN:-$(release_bin)}
[[ -x $reactor ]] || die "missing $reactor"
# Every command below is bounded: a run that hangs fails the script.
bench() { timeout -k 5 120 taskset -c 1 "$reactor" bench "$@"; }

# ---------------------------------------------------------------- servers

mapfile -t ports < <(free_ports $((2 * SERVERS + 3)))
redis_port=${ports[0]}
spawn "$tmp/redis.log" taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 \
  --save '' --appendonly no --dir "$tmp"
redis_pid=$SPAWNED
wait_tcp "$redis_port" "$redis_pid" 10 || die "redis did not start: $(cat "$tmp/redis.log")"
bus=redis://127.0.0.1:$redis_port

# stat HTTP_PORT KEY: one figure of a server's /stats.
stat() {
  curl -sf --max-time 5 "http://127.0.0.1:$1/stats" |
    python3 -c "import json, sys; print(json.load(sys.stdin)['$2'])"
}

bus_pids=() bus_chat=() bus_http=()
for ((i = 0; i < SERVERS; i++)); do
  chat=${ports[1 + 2 * i]} http=${ports[2 + 2 * i]}
  spawn "$tmp/bus$i.log" taskset -c 0 "$reactor" serve --chat "127.0.0.1:$chat" \
    --http "127.0.0.1:$http" --max-conns $((MEMBERS + 100)) --log-level warn --bus "$bus"
  bus_pids+=("$SPAWNED") bus_chat+=("$chat") bus_http+=("$http")
  wait_tcp "$chat" "$SPAWNED" 10 || die "bus server $i did not start: $(cat "$tmp/bus$i.log")"
done
solo_chat=${ports[1 + 2 * SERVERS]} solo_http=${ports[2 + 2 * SERVERS]}
spawn "$tmp/solo.log" taskset -c 0 "$reactor" serve --chat "127.0.0.1:$solo_chat" \
  --http "127.0.0.1:$solo_http" --max-conns $((MEMBERS + 100)) --log-level warn
solo_pid=$SPAWNED
wait_tcp "$solo_chat" "$solo_pid" 10 || die "the server with no bus did not start"
for ((i = 0; i < SERVERS; i++)); do
  for ((t = 0; t < 100; t++)); do
    [[ $(stat "${bus_http[i]}" bus_state) == 3 ]] && break
    sleep 0.1
  done
  [[ $(stat "${bus_http[i]}" bus_state) == 3 ]] || die "bus server $i: the bus is not up"
done

server_flags=() pid_flags=()
for ((i = 0; i < SERVERS; i++)); do
  server_flags+=(--server "127.0.0.1:${bus_chat[i]}") pid_flags+=(--pid "${bus_pids[i]}")
done

# field FILE EXPR: a value from a bench JSON file (python expression on `j`).
field() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# ---------------------------------------------------------------- (a), (b)

# run KIND RATE ROUND: one measured run; prints "p50 p99 local_p50
# local_p99 remote_p50 remote_p99 us_cpu_per_delivery lost errors valid".
run() {
  local kind=$1 rate=$2 json=$tmp/$1-$2-$3.json
  local args=(chat -c "$MEMBERS" --senders 3 --rate "$rate" -d "$DUR" --warmup "$WARMUP"
    --timeout 10s -q --json "$json")
  if [[ $kind == bus ]]; then
    args+=("${server_flags[@]}" "${pid_flags[@]}")
  else
    args+=("127.0.0.1:$solo_chat" --pid "$solo_pid")
  fi
  bench "${args[@]}" >"$tmp/bench.out" 2>&1 || true
  [[ -s $json ]] || die "$kind $rate: no result: $(tail -5 "$tmp/bench.out")"
  field "$json" '" ".join(("%.0f" % x if isinstance(x, float) else str(x)) for x in [
    j["latency_us"]["p50"], j["latency_us"]["p99"],
    *((j["latency_split_us"] or {}).get("local", {}).get(k, "-") for k in ("p50", "p99")),
    *((j["latency_split_us"] or {}).get("remote", {}).get(k, "-") for k in ("p50", "p99")),
    "%.2f" % (1e6 * j["server"]["cpu_s"] / max(1, j["requests"])),
    j["workload_counters"]["lost"], j["errors"], "valid" if j["valid"] else "INVALID:" + "/".join(
      ("cpu-wait" if "waited" in w else "late" if "late" in w else "busy" if "on CPU" in w else "other")
      for w in j["invalid_reasons"])])'
}

# ratio A B: A / B to two places (0 if B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

lat_rows=() lat_summary=()
for rate in $RATES; do
  r_p50=() r_p99=() r_remote99=() r_cpu=()
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order=(bus solo); else order=(solo bus); fi
    declare -A got=()
    for kind in "${order[@]}"; do
      got[$kind]=$(run "$kind" "$rate" "$r")
      log "rate $rate round $r $kind: ${got[$kind]}"
    done
    read -r a50 a99 al50 al99 ar50 ar99 acpu alost aerr avalid <<<"${got[bus]}"
    read -r b50 b99 _ _ _ _ bcpu blost berr bvalid <<<"${got[solo]}"
    r_p50+=("$(ratio "$a50" "$b50")") r_p99+=("$(ratio "$a99" "$b99")")
    r_remote99+=("$(ratio "$ar99" "$b99")") r_cpu+=("$(ratio "$acpu" "$bcpu")")
    lat_rows+=("| $rate | $r | ${order[0]} | $a50 / $a99 | $al50 / $al99 | $ar50 / $ar99 | $b50 / $b99 | $acpu | $bcpu | ${r_cpu[-1]} | $alost+$aerr / $blost+$berr | $avalid / $bvalid |")
    unset got
  done
  lat_summary+=("| $rate | $(median "${r_p50[@]}") | $(median "${r_p99[@]}") | $(median "${r_remote99[@]}") | $(median "${r_cpu[@]}") |")
done

# ---------------------------------------------------------------- (c)

# bus_sum KEY: KEY of /stats summed over the bus servers.
bus_sum() {
  local i s=0
  for ((i = 0; i < SERVERS; i++)); do s=$((s + $(stat "${bus_http[i]}" "$1"))); done
  echo "$s"
}

# redis-benchmark PUBLISH with SERVERS subscribers on the channel (one
# connection each, read and counted by a small reader on core 1).
cat >"$tmp/subscriber.py" <<'EOF'
import signal, socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n")
mark, n, tail = b"$7\r\nmessage\r\n", 0, b""
def done(*_):
    open(out, "w").write(str(n))
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    b = s.recv(1 << 16)
    if not b:
        done()
    buf = tail + b
    n += buf.count(mark)
    tail = buf[-(len(mark) - 1):]
EOF
# The bus's envelope and line, as Redis carries it: about this size.
msg=$(printf '1 %016x.0 1 %06d [lobby] guest1-abcdef: bench 0 %06d 1234567890123' 0 0 0)
# rb_run CLIENTS PIPELINE N: one redis-benchmark run; appends its row.
rb_rows=()
rb_run() {
  local clients=$1 pipe=$2 n=$3 i t pid out rps delivered=0 sub_pids=()
  for ((i = 0; i < SERVERS; i++)); do
    spawn "$tmp/sub$i.log" taskset -c 1 python3 "$tmp/subscriber.py" "$redis_port" "$tmp/sub$i.count"
    sub_pids+=("$SPAWNED")
  done
  for ((t = 0; t < 100; t++)); do
    [[ $(redis-cli -p "$redis_port" PUBSUB NUMSUB ch | tail -1) == "$SERVERS" ]] && break
    sleep 0.05
  done
  out=$(timeout -k 5 120 taskset -c 1 redis-benchmark -p "$redis_port" -c "$clients" -n "$n" \
    -P "$pipe" -q --csv PUBLISH ch "$msg" | tail -1)
  sleep 0.5
  for pid in "${sub_pids[@]}"; do stop_pid "$pid" TERM 5; done
  for ((i = 0; i < SERVERS; i++)); do
    delivered=$((delivered + $(cat "$tmp/sub$i.count" 2>/dev/null || echo 0)))
  done
  rps=$(echo "$out" | awk -F'","' '{gsub(/"/, "", $2); print $2}')
  log "redis-benchmark PUBLISH -c $clients -P $pipe: $out; delivered $delivered of $((n * SERVERS))"
  rb_rows+=("| $clients | $pipe | $rps | $delivered of $((n * SERVERS)) |")
}

# rb_all: redis-benchmark as the servers would use it (SERVERS clients,
# pipelined) and at its default 50 clients without a pipeline.
rb_all() {
  rb_run "$SERVERS" 16 "$RB_N"
  rb_run 50 1 $((RB_N / 3))
}

# Side by side: redis-benchmark, the bus's steps, redis-benchmark again.
rb_all
tput_rows=()
for rate in $TPUT_RATES; do
  json=$tmp/tput-$rate.json
  p0=$(bus_sum bus_published) r0=$(bus_sum bus_received)
  d0=$(bus_sum bus_dropped) l0=$(bus_sum bus_lost)
  bench chat "${server_flags[@]}" -c "$SERVERS" --senders "$SERVERS" --rate "$rate" \
    -d "$TPUT_DUR" --timeout 5s -q --json "$json" >"$tmp/bench.out" 2>&1 || true
  [[ -s $json ]] || die "throughput $rate: no result: $(tail -5 "$tmp/bench.out")"
  p=$(( $(bus_sum bus_published) - p0 )) rc=$(( $(bus_sum bus_received) - r0 ))
  dr=$(( $(bus_sum bus_dropped) - d0 )) ls=$(( $(bus_sum bus_lost) - l0 ))
  row=$(field "$json" '"%.0f | %.0f | %d | %s | %s" % (j["workload_counters"]["lines_sent"] / j["duration_s"],
    j["workload_counters"]["deliveries_remote"] / j["duration_s"], j["workload_counters"]["lost"],
    "%.0f / %.0f" % (j["latency_us"]["p50"], j["latency_us"]["p99"]),
    "valid" if j["valid"] else "INVALID: " + "; ".join(w.split(":")[0] for w in j["invalid_reasons"]))')
  log "throughput $rate lines/s: $row; published $p received $rc dropped $dr lost $ls"
  tput_rows+=("| $rate | $row | $p | $rc | $dr / $ls |")
done
rb_all

# ---------------------------------------------------------------- report

commit=$(git rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then commit+="+dirty"; fi
{
  echo "Commit $commit, Linux $(uname -r), $(nproc) cores, $(redis-server --version | awk '{print $3}');"
  echo "Redis and the servers on core 0, generators on core 1; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "Fan-out: $MEMBERS members, 3 senders, bus = over $SERVERS servers on one Redis, solo = one server without a bus;"
  echo "$WARMUP warmup, $DUR measured per run, $ROUNDS rounds per rate, order alternating. Latency p50 / p99 in us."
  echo
  echo "| lines/s | round | first | bus all | bus local | bus remote | solo | bus us CPU per delivery | solo | ratio | lost+errors (bus / solo) | verdict (bus / solo) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${lat_rows[@]}"
  echo
  echo "| lines/s | median p50 ratio bus / solo | median p99 ratio | median p99 ratio, remote only / solo | median CPU per delivery ratio |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${lat_summary[@]}"
  echo
  echo "Bus throughput: $SERVERS members, one on each server, each a sender; $TPUT_DUR per step."
  echo
  echo "| asked lines/s | lines/s sent | remote deliveries/s | lost | latency p50 / p99 us | verdict | bus_published | bus_received | dropped / lost (bus) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${tput_rows[@]}"
  echo
  echo "redis-benchmark PUBLISH of ${#msg} bytes with $SERVERS subscribers, before and after the steps above:"
  echo
  echo "| clients | pipeline | publishes/s | deliveries counted |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rb_rows[@]}"
} >"$tmp/table.md"
cat "$tmp/table.md"
if [[ -n $out_file ]]; then cp "$tmp/table.md" "$out_file"; log "table written to $out_file"; fi
