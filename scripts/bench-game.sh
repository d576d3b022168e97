#!/usr/bin/env bash
# The game's tick on one core: for each player count, a fresh
# `reactor serve --game` on core 0 and `reactor bench game` bots on core 1
# (UDP, 30 Hz, the server's /stats read over the window), and one row of
# what the server's tick did: the share of ticks that started more than
# 250 us and 1 ms off their schedule, the p99 bound and the largest, ticks
# skipped and overrunning, the CPU per tick, and the bots' own jitter p99.
#
#   scripts/bench-game.sh
#   PLAYERS="32 128" ROUNDS=3 SECS=10 REACTOR_BASE=/old/reactor scripts/bench-game.sh
#
# Environment: PLAYERS ("1 32 64 100 128"), ROUNDS (2), SECS (6), BIN (the
# release binary; built if missing), REACTOR_BASE (another build, run in
# the same rotation: A B A B, so both see the same machine), BENCH (the
# binary that runs the bots; default BIN, so both servers meet the same
# bots), OUT (a directory to keep each run's JSON report in; default a
# temporary one, removed at the end). Every run must be valid by the harness's verdict and lose no
# snapshot; the script exits 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

PLAYERS=${PLAYERS:-1 32 64 100 128}
ROUNDS=${ROUNDS:-2}
SECS=${SECS:-6}
BIN=${BIN:-$(release_bin)}
REACTOR_BASE=${REACTOR_BASE:-}
(($(nproc) >= 2)) || die "needs 2 cores (server on 0, bots on 1)"
[[ -x $BIN ]] || (cd "$root" && cargo build --release --bin reactor)
BENCH=${BENCH:-$BIN}
builds=(new)
[[ -n $REACTOR_BASE ]] && builds=(base new)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-game.XXXXXX")
# shellcheck disable=SC2016  # evaluated by the trap
install_cleanup 'rm -rf "$tmp"'
OUT=${OUT:-$tmp}
mkdir -p "$OUT"

# run BUILD N OUT: one run with N players against BUILD (base or new); its
# JSON report in OUT.
run() {
  local build=$1 n=$2 out=$3 bin=$BIN ports game http srv
  [[ $build == base ]] && bin=$REACTOR_BASE
  mapfile -t ports < <(free_ports 2)
  game=${ports[0]} http=${ports[1]}
  spawn "$tmp/srv.log" taskset -c 0 "$bin" serve --game "127.0.0.1:$game" \
    --http "127.0.0.1:$http" --log-level warn
  srv=$SPAWNED
  wait_tcp "$http" "$srv" 20 || { cat "$tmp/srv.log" >&2; die "server did not start"; }
  if ! taskset -c 1 "$BENCH" bench game "127.0.0.1:$game" --players "$n" -d "${SECS}s" \
    --stats "127.0.0.1:$http" --pid "$srv" --json "$out" >"$tmp/bench.out" 2>&1; then
    cat "$tmp/bench.out" >&2
    die "bench game failed ($build, $n players)"
  fi
  stop_pid "$srv" TERM 10
  [[ $STOP_RC == 0 ]] || { cat "$tmp/srv.log" >&2; die "server exited $STOP_RC"; }
}

# row BUILD N FILES...: the table row of BUILD at N players over its runs.
row() {
  python3 - "$@" <<'EOF'
import json, sys
build, n, files = sys.argv[1], sys.argv[2], sys.argv[3:]
cells = {k: [] for k in ("250", "1000", "p99", "max", "miss", "cpu", "bots", "verdict")}
for f in files:
    d = json.load(open(f))
    g, s = d["workload_figures"], d["workload_figures"]["server"]
    iv = max(s["tick_intervals"], 1)
    over = {o["us"]: o["ticks"] for o in s["tick_jitter_over_us"]}
    cells["250"].append(f"{100 * over[250] / iv:.1f}%")
    cells["1000"].append(f"{100 * over[1000] / iv:.1f}%")
    p99 = s["tick_jitter_p99_le_us"]  # None: over the largest step, 5 ms
    cells["p99"].append(f"<= {p99 / 1000:g} ms" if p99 is not None else "> 5 ms")
    cells["max"].append(f"{s['tick_jitter_max_us_since_start'] / 1000:.2f}")
    cells["miss"].append(f"{s['missed_ticks']}/{s['tick_overruns']}")
    cells["cpu"].append(f"{g['server_cpu']['per_tick_us'] / 1000:.2f}")
    cells["bots"].append(f"{g['jitter_us']['p99'] / 1000:.2f}")
    valid = d["valid"]
    lost = g["snapshots"]["lost"]
    cells["verdict"].append(("valid" if valid else "INVALID") + (f", {lost} lost" if lost else ""))
print("| " + " | ".join([n, build] + [" / ".join(v) for v in cells.values()]) + " |")
EOF
}

declare -A files=()
for ((round = 1; round <= ROUNDS; round++)); do
  for n in $PLAYERS; do
    for b in "${builds[@]}"; do
      f=$OUT/$b.$n.$round.json
      run "$b" "$n" "$f"
      files[$b.$n]+="$f "
      log "round $round, $n players, $b: done"
    done
  done
done

echo "| players | build | ticks off > 250 us | > 1 ms | server tick p99 | max jitter (ms) | skipped/overran | CPU per tick (ms) | bots' jitter p99 (ms) | verdict |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
status=0
for n in $PLAYERS; do
  for b in "${builds[@]}"; do
    # shellcheck disable=SC2086  # the list splits on purpose
    line=$(row "$b" "$n" ${files[$b.$n]})
    echo "$line"
    [[ $line == *INVALID* || $line == *lost* ]] && status=1
  done
done
exit $status
