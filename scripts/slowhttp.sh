#!/usr/bin/env bash
# Slow HTTP attacks against `reactor serve --http` with slowhttptest
# (Debian package `slowhttptest`, installed if missing): slow headers (-H,
# slowloris), slow body (-B, R-U-Dead-Yet) and slow read (-X), one after
# the other. During each attack a probe does `GET /` with curl every
# 200 ms; the script fails if any probe fails or takes over 1 s, if the
# server logs an ERROR or a panic, or if its fd count is not back to its
# baseline after the attacks. Loopback only; the port comes from the OS.
#
#   scripts/slowhttp.sh                      # 30 s per mode, 1000 connections
#   DURATION=8 CONNS=300 scripts/slowhttp.sh # the CI step
#
# Environment: DURATION (s per mode, 30), CONNS (1000), RATE (connections/s,
# 200), MODES ("H B X"), BIN (default target/release/reactor, built if
# missing), PROBE_MAX_MS (1000), XFAIL (modes whose probe failures are a
# known server bug: reported as XFAIL, not failing the script; a passing
# XFAIL mode says XPASS).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

DURATION=${DURATION:-30}
CONNS=${CONNS:-1000}
RATE=${RATE:-200}
MODES=${MODES:-H B X}
PROBE_MAX_MS=${PROBE_MAX_MS:-1000}
BIN=${BIN:-$(release_bin)}
XFAIL=${XFAIL:-}

if ! command -v slowhttptest >/dev/null 2>&1; then
  log "installing slowhttptest"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slowhttptest >/dev/null
fi
command -v curl >/dev/null 2>&1 || die "curl is needed"
if [[ ! -x $BIN ]]; then
  (cd "$root" && cargo build --release --bin reactor)
fi
raise_nofile
((CONNS + 64 <= $(ulimit -n))) || die "open-files limit $(ulimit -n) too low for CONNS=$CONNS"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-slowhttp.XXXXXX")
install_cleanup 'rm -rf "$tmp"'
mkdir -p "$tmp/www"
head -c $((1 << 20)) /dev/urandom >"$tmp/www/big.bin"

srvlog=$tmp/server.log
spawn "$srvlog" "$BIN" serve --http 127.0.0.1:0 --root "$tmp/www" --log-level info
srv=$SPAWNED
wait_log "$srvlog" ": ready" "$srv" 10 || { cat "$srvlog" >&2; die "server not ready"; }
addr=$(sed -n 's/.*http listening on \([0-9.]*:[0-9]*\).*/\1/p' "$srvlog" | head -1)
[[ -n $addr ]] || die "no 'http listening on' line"
url=http://$addr
base_fds=$(fd_count "$srv")
log "server pid $srv on $addr, $base_fds fds; ${DURATION}s per mode, $CONNS connections at $RATE/s"

# probe_loop OUT: `GET /` every 200 ms until killed; one line per probe:
# "<unix ms> <http code> <ms>" (code 000: no response within 3 s).
probe_loop() {
  local out=$1 line code secs
  while :; do
    line=$(curl -s -o /dev/null --max-time 3 -w '%{http_code} %{time_total}' "$url/" 2>/dev/null) ||
      line="000 ${line#* }"
    code=${line%% *} secs=${line#* }
    [[ $secs =~ ^[0-9.]+$ ]] || secs=3
    printf '%s %s %.0f\n' "$(date +%s%3N)" "$code" "$(awk -v s="$secs" 'BEGIN{print s*1000}')" >>"$out"
    sleep 0.2
  done
}

# One attack: mode letter, extra slowhttptest arguments.
attack() {
  local mode=$1; shift
  local out=$tmp/probe-$mode.txt st=$tmp/slowhttptest-$mode.txt probe rc=0
  : >"$out"
  probe_loop "$out" &
  probe=$!
  timeout -k 5 $((DURATION + 30)) slowhttptest -c "$CONNS" -r "$RATE" -l "$DURATION" -p 3 \
    "$@" >"$st" 2>&1 </dev/null || rc=$?
  kill "$probe" 2>/dev/null || true
  wait "$probe" 2>/dev/null || true
  alive "$srv" || { cat "$srvlog" >&2; die "server died during -$mode"; }
  # slowhttptest's verdict: when it ended, why, and whether its own probe
  # found the service available (colour codes and \r stripped).
  tr '\r' '\n' <"$st" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' >"$st.txt"
  local ended why avail
  ended=$(sed -n 's/.*Test ended on \([0-9]*\)[a-z]* second.*/\1/p' "$st.txt" | tail -1)
  why=$(sed -n 's/.*Exit status: *//p' "$st.txt" | tail -1 | tr ' ' '_')
  avail=$(sed -n 's/.*service available: *\([A-Z]*\).*/\1/p' "$st.txt" | tail -1)
  # Sorted probe times give the percentiles (mawk has no asort).
  awk '{ print $3, $2 }' "$out" | sort -n | awk -v mode="-$mode" -v max="$PROBE_MAX_MS" \
    -v ended="${ended:-?}" -v why="${why:-?}" -v avail="${avail:-?}" -v rc="$rc" '
    { n++; t[n] = $1; if ($2 != "200") bad++; if ($1 > max) slow++ }
    END {
      p99 = int(n * 0.99); if (p99 < 1) p99 = 1
      printf "%-4s %6d %6d %5d %6d %6d %6d %5s %5s %3s  %s\n", mode, n, bad + 0, slow + 0,
        t[int((n + 1) / 2)], t[p99], t[n], ended, avail, rc, why
    }' >>"$tmp/table"
}

printf '%-4s %6s %6s %5s %6s %6s %6s %5s %5s %3s  %s\n' mode probes failed ">1s" p50_ms \
  p99_ms max_ms ended avail rc "slowhttptest exit status" >"$tmp/table"
for m in $MODES; do
  case $m in
    H) attack H -H -i 5 -u "$url/" ;;
    B) attack B -B -i 5 -s 8192 -t POST -u "$url/" ;;
    X) attack X -X -w 512 -y 1024 -n 5 -z 32 -k 3 -u "$url/big.bin" ;;
    *) die "unknown mode $m (want H, B or X)" ;;
  esac
  log "-$m done"
done

stats=$(curl -s --max-time 3 "$url/stats" || true)
# After the attacks the server closes what slowhttptest left behind.
fds=0
for ((i = 0; i < 300; i++)); do
  fds=$(fd_count "$srv")
  ((fds == base_fds)) && break
  sleep 0.1
done
stop_pid "$srv" TERM 8

echo "slowhttptest against reactor: ${DURATION}s per mode, -c $CONNS -r $RATE; probe GET / every 200 ms"
cat "$tmp/table"
echo "server: fds $fds (baseline $base_fds), exit $STOP_RC"
echo "stats: $stats"
grep -a 'stopped:' "$srvlog" | sed 's/.*stopped: /summary: /' || true

fail=0
for m in $MODES; do
  if awk -v m="-$m" '$1 == m && ($2 == 0 || $3 > 0 || $4 > 0 || $10 != 0) { bad = 1 } END { exit !bad }' "$tmp/table"; then
    awk -v m="-$m" -v max="$PROBE_MAX_MS" '$2 != "200" || $3 > max { print "  " m, $0 }' \
      "$tmp/probe-$m.txt" >"$tmp/bad-$m"
    if [[ " $XFAIL " == *" $m "* ]]; then
      log "XFAIL -$m (known server bug): probes failed or took over ${PROBE_MAX_MS} ms (unix ms, code, ms):"
      cat "$tmp/bad-$m" >&2
    else
      log "FAIL -$m: probes failed or took over ${PROBE_MAX_MS} ms (unix ms, code, ms):"
      cat "$tmp/bad-$m" >&2
      fail=1
    fi
  elif [[ " $XFAIL " == *" $m "* ]]; then
    log "XPASS -$m: every probe answered within ${PROBE_MAX_MS} ms (drop it from XFAIL)"
  fi
done
if grep -aE '^[^ ]+ ERROR |panicked' "$srvlog" >&2; then
  log "FAIL: ERROR or panic in the server log"
  fail=1
fi
((fds == base_fds)) || { log "FAIL: server fds $fds, baseline $base_fds"; fail=1; }
[[ $STOP_RC == 0 ]] || { log "FAIL: exit status $STOP_RC after SIGTERM"; fail=1; }
exit "$fail"
