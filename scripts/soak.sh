#!/usr/bin/env bash
# Soak (issue 6; not part of CI): one server, mixed load for DURATION
# seconds with `reactor bench`:
#   - connect/close cycles on the greet port (connect, read the greeting to
#     EOF, close) at CONNECT_RATE per second: 556/s makes a million in the
#     default 30 minutes;
#   - echo, 256-byte messages on ECHO_CONNS connections at ECHO_RATE/s;
#   - HTTP keep-alive GET / at HTTP_RATE/s, and GET of a 64 KiB file with
#     one connection per request (Connection: close) at FILE_RATE/s.
# Every SAMPLE seconds it records the server's RSS, fd count, open
# connections and CPU. Fails unless: RSS after the WARMUP seconds grows by
# less than RSS_LIMIT_KIB (1 MiB), the fd count returns to its baseline
# once the load stops, every load generator reports zero errors, SIGTERM
# gives exit 0, and the log has no ERROR line and no panic.
#
#   scripts/soak.sh                 # 30 minutes
#   DURATION=150 scripts/soak.sh    # a short run
#
# Environment: DURATION, WARMUP, SAMPLE, CONNECT_RATE, ECHO_CONNS, ECHO_RATE,
# HTTP_RATE, FILE_RATE, RSS_LIMIT_KIB, BIN, SERVER_ARGS (as above).
# Loopback only, ports from the OS; needs `ulimit -n` well above the
# connection counts (raised to the hard limit here).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

DURATION=${DURATION:-1800}
WARMUP=${WARMUP:-60}
SAMPLE=${SAMPLE:-10}
CONNECT_RATE=${CONNECT_RATE:-556}
ECHO_CONNS=${ECHO_CONNS:-20}
ECHO_RATE=${ECHO_RATE:-2000}
HTTP_RATE=${HTTP_RATE:-1000}
FILE_RATE=${FILE_RATE:-100}
RSS_LIMIT_KIB=${RSS_LIMIT_KIB:-1024}
BIN=${BIN:-$(release_bin)}
# Extra `reactor serve` flags, e.g. SERVER_ARGS="--idle-timeout 5s".
SERVER_ARGS=${SERVER_ARGS:-}

((DURATION > WARMUP)) || die "DURATION ($DURATION) must exceed WARMUP ($WARMUP)"
if [[ ! -x $BIN ]]; then
  (cd "$root" && cargo build --release --bin reactor)
fi
raise_nofile

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-soak.XXXXXX")
install_cleanup 'rm -rf "$tmp"'
mkdir -p "$tmp/www"
head -c 65536 /dev/urandom >"$tmp/www/file.bin"

srvlog=$tmp/server.log
spawn "$srvlog" "$BIN" serve --greet 127.0.0.1:0 --echo 127.0.0.1:0 --http 127.0.0.1:0 \
  --root "$tmp/www" --log-level info $SERVER_ARGS
srv=$SPAWNED
wait_log "$srvlog" ": ready" "$srv" 10 || { cat "$srvlog" >&2; die "server not ready"; }
addr_of() { sed -n "s/.* $1 listening on \([0-9.]*:[0-9]*\).*/\1/p" "$srvlog" | head -1; }
greet=$(addr_of greet) echo_a=$(addr_of echo) http=$(addr_of http)
[[ -n $greet && -n $echo_a && -n $http ]] || die "missing listen lines: $(cat "$srvlog")"
base_fds=$(fd_count "$srv")
log "server pid $srv: greet $greet, echo $echo_a, http $http; $base_fds fds"
log "soak: ${DURATION}s (warm-up ${WARMUP}s), connect ${CONNECT_RATE}/s, echo ${ECHO_RATE}/s" \
  "on $ECHO_CONNS conns, http ${HTTP_RATE}/s, file ${FILE_RATE}/s (close)"

# The load: four generators, each bounded by its own duration (+ timeout).
b() { local name=$1; shift; spawn "$tmp/$name.out" timeout -k 5 $((DURATION + 60)) "$BIN" bench "$@" \
  -q -d "$DURATION" --json "$tmp/$name.json"; }
b connect connect "$greet" -c 50 --rate "$CONNECT_RATE" --source-ips 8 --timeout 5s
b echo echo "$echo_a" -c "$ECHO_CONNS" --rate "$ECHO_RATE" --size 256
b http http "http://$http/" -c 20 --rate "$HTTP_RATE"
b file http "http://$http/file.bin" -c 10 --rate "$FILE_RATE" --close --timeout 5s
loads=("${SPAWNED_PIDS[@]:1}")

stats() { curl -s --max-time 3 "http://$http/stats" || echo '{}'; }
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

t0=$(date +%s)
printf '%6s %9s %6s %7s %8s %12s\n' t_s rss_kib fds open cpu_s accepted >"$tmp/samples"
warm_rss='' max_rss=0
while :; do
  now=$(($(date +%s) - t0))
  alive "$srv" || { cat "$srvlog" >&2; die "server died at ${now}s"; }
  s=$(stats)
  rss=$(rss_kib "$srv")
  printf '%6d %9d %6d %7s %8s %12s\n' "$now" "$rss" "$(fd_count "$srv")" "$(field open <<<"$s")" \
    "$(awk -v t="$(cpu_ticks "$srv")" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", t/hz}')" \
    "$(field accepted <<<"$s")" | tee -a "$tmp/samples" >&2
  if ((now >= WARMUP)); then
    [[ -n $warm_rss ]] || warm_rss=$rss
    ((rss > max_rss)) && max_rss=$rss
  fi
  running=0
  for p in "${loads[@]}"; do alive "$p" && running=1; done
  ((running)) || break
  sleep "$SAMPLE"
done
for p in "${loads[@]}"; do wait "$p" 2>/dev/null || log "load generator $p exited non-zero"; done

# Load over: connections drain (linger is 2 s), fds back to the baseline.
fds=0
for ((i = 0; i < 100; i++)); do
  fds=$(fd_count "$srv")
  ((fds == base_fds)) && break
  sleep 0.1
done
end_rss=$(rss_kib "$srv")
final=$(stats)
stop_pid "$srv" TERM 10

echo "soak: ${DURATION}s, warm-up ${WARMUP}s; samples every ${SAMPLE}s:"
cat "$tmp/samples"
echo
fail=0
for name in connect echo http file; do
  j=$tmp/$name.json
  if [[ ! -s $j ]]; then
    echo "$name: no result ($(tail -3 "$tmp/$name.out" | tr '\n' ' '))"
    fail=1
    continue
  fi
  python3 - "$name" "$j" <<'EOF' || fail=1
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
errs = r.get("errors", 0)
print(f"{name}: {r.get('requests')} requests in {r.get('duration_s')} s "
      f"({r.get('requests_per_sec', 0):.0f}/s), errors {errs} {r.get('errors_by_kind') or ''}, "
      f"unsent {r.get('unsent')}")
nerr = errs
sys.exit(1 if nerr else 0)
EOF
done
growth=$((max_rss - warm_rss))
echo "RSS: ${warm_rss} KiB after warm-up, max ${max_rss} KiB after it (growth ${growth} KiB," \
  "limit ${RSS_LIMIT_KIB}); ${end_rss} KiB at the end"
echo "fds: ${fds} after the load, baseline ${base_fds}"
echo "stats at the end: $final"
grep -a 'stopped:' "$srvlog" | sed 's/.*stopped: /summary: /' || true
echo "exit status after SIGTERM: $STOP_RC"
((growth < RSS_LIMIT_KIB)) || { log "FAIL: RSS grew ${growth} KiB after warm-up"; fail=1; }
((fds == base_fds)) || { log "FAIL: fds ${fds}, baseline ${base_fds}"; fail=1; }
[[ $STOP_RC == 0 ]] || { log "FAIL: exit status $STOP_RC"; fail=1; }
if grep -aE '^[^ ]+ ERROR |panicked' "$srvlog" >&2; then
  log "FAIL: ERROR or panic in the server log"
  fail=1
fi
exit "$fail"
