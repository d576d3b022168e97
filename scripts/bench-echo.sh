#!/usr/bin/env bash
# Echo throughput and CPU cost: reactor against epoll_echo (and tokio-echo),
# side by side on one machine, as the project's rules require.
#
#   scripts/bench-echo.sh [OUT.md]
#
# Server on core 0, epoll_load on core 1; 100 connections, 64-byte messages,
# depth 1 and 16; rounds alternate the servers (A B C A B C ...). For every
# run the server's utime+stime is read from /proc/PID/stat before and after
# the load, giving messages per server CPU-second as well as messages per
# second. Prints a markdown table (and writes it to OUT.md if given): each
# round's figures and the median of the per-round ratios.
#
# Environment (defaults in brackets):
#   ROUNDS [5]  rounds per depth      SECS [5]    seconds per run
#   DEPTHS ["1 16"]  messages in flight per connection
#   CONNS [100]  LEN [64]  epoll_load -c and -l
#   TOKIO [1]   also run tokio-echo (0: reactor and epoll_echo only)
#   WARMUP [1]  seconds of unmeasured load per server first (0: none)
#   PEERS_OUT [/tmp/reactor-peers]  where ../shared/peers/build.sh puts peers
#   SKIP_BUILD [0]  1: use the existing peers and target/release/reactor
#   REACTOR_BIN [$CARGO_TARGET_DIR or target, /release/reactor]  the binary to measure
#   REACTOR_SRC [.]  the checkout REACTOR_BIN was built from (for the commit shown)
#   REACTOR_BASE []  another reactor binary (an older build) to run as one
#                    more server, "reactor-base": its column gives before/after
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root=$(repo_root)
cd "$root"

ROUNDS=${ROUNDS:-5} SECS=${SECS:-5} DEPTHS=${DEPTHS:-"1 16"}
CONNS=${CONNS:-100} LEN=${LEN:-64} TOKIO=${TOKIO:-1} WARMUP=${WARMUP:-1}
PEERS_OUT=${PEERS_OUT:-/tmp/reactor-peers} SKIP_BUILD=${SKIP_BUILD:-0}
out_file=${1:-}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $ROUNDS -le 100 ]] || die "ROUNDS must be 1..100"
[[ $SECS =~ ^[0-9]+([.][0-9]+)?$ ]] || die "SECS must be a number"
(( $(nproc) >= 2 )) || die "needs 2 cores (server on 0, load on 1)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-bench.XXXXXX")
install_cleanup 'rm -rf "$tmp"'
raise_nofile

if [[ $SKIP_BUILD != 1 ]]; then
  log "building peers into $PEERS_OUT"
  "$root/../shared/peers/build.sh" "$PEERS_OUT" >&2
  log "building reactor (release)"
  cargo build --release --quiet >&2
fi
reactor=${REACTOR_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/reactor}
for f in "$reactor" "$PEERS_OUT/epoll_echo" "$PEERS_OUT/epoll_load"; do
  [[ -x $f ]] || die "missing $f"
done
servers=(reactor epoll_echo)
if [[ $TOKIO == 1 ]]; then
  [[ -x $PEERS_OUT/tokio-echo ]] || die "missing $PEERS_OUT/tokio-echo (TOKIO=0 to skip)"
  servers+=(tokio-echo)
fi
if [[ -n ${REACTOR_BASE:-} ]]; then
  [[ -x $REACTOR_BASE ]] || die "missing $REACTOR_BASE (REACTOR_BASE)"
  servers+=(reactor-base)
fi
hz=$(getconf CLK_TCK)

# Start every server once, pinned to core 0, each on its own free port; the
# idle ones use no CPU while another is measured.
declare -A pid port reported
mapfile -t ports < <(free_ports "${#servers[@]}")
(( ${#ports[@]} == ${#servers[@]} )) || die "could not pick free ports"
for i in "${!servers[@]}"; do
  s=${servers[$i]} p=${ports[$i]}
  case $s in
    reactor) cmd=("$reactor" serve --echo "127.0.0.1:$p" --log-level warn) ;;
    reactor-base) cmd=("$REACTOR_BASE" serve --echo "127.0.0.1:$p" --log-level warn) ;;
    epoll_echo) cmd=("$PEERS_OUT/epoll_echo" "$p") ;;
    tokio-echo) cmd=("$PEERS_OUT/tokio-echo" "127.0.0.1:$p") ;;
  esac
  spawn "$tmp/$s.log" taskset -c 0 "${cmd[@]}"
  pid[$s]=$SPAWNED port[$s]=$p
done
for s in "${servers[@]}"; do
  wait_tcp "${port[$s]}" "${pid[$s]}" 10 || { cat "$tmp/$s.log" >&2; die "$s did not start"; }
  log "$s: pid ${pid[$s]}, port ${port[$s]}"
done

# check_server SERVER: in the main shell (so `wait` can reap it), say once
# why a server is gone, with the end of its log.
check_server() {
  local s=$1 st=0
  alive "${pid[$s]}" && return 0
  [[ -n ${reported[$s]:-} ]] && return 1
  reported[$s]=1
  wait "${pid[$s]}" 2>/dev/null || st=$?
  log "$s (pid ${pid[$s]}) exited with status $st; its log ends:"
  tail -n 20 "$tmp/$s.log" | sed 's/^/    /' >&2
  cp "$tmp/$s.log" "${TMPDIR:-/tmp}/bench-echo-$s.log" 2>/dev/null &&
    log "full log kept in ${TMPDIR:-/tmp}/bench-echo-$s.log"
  return 1
}

# run_load SERVER DEPTH SECS: one epoll_load run on core 1. Prints
# "MSGS_PER_S TICKS" or "FAIL reason" on stdout.
run_load() {
  local s=$1 d=$2 t=$3 t0 t1 outp rc=0
  alive "${pid[$s]}" || { echo "FAIL server-exited"; return; }
  t0=$(cpu_ticks "${pid[$s]}")
  outp=$(taskset -c 1 timeout -k 5 "$(awk -v t="$t" 'BEGIN {print int(t + 30)}')" \
    "$PEERS_OUT/epoll_load" 127.0.0.1 "${port[$s]}" -c "$CONNS" -l "$LEN" -d "$d" -t "$t" 2>&1) || rc=$?
  t1=$(cpu_ticks "${pid[$s]}" 2>/dev/null || echo x)
  if ((rc != 0)) || [[ $t1 == x ]] || ! [[ $outp =~ ^([0-9]+)\ msgs/s.*corrupt_bytes=0 ]]; then
    log "$s depth $d: epoll_load rc=$rc: $outp"
    echo "FAIL rc=$rc"
    return
  fi
  echo "${BASH_REMATCH[1]} $((t1 - t0))"
}

if [[ $WARMUP != 0 ]]; then
  for s in "${servers[@]}"; do run_load "$s" 1 "$WARMUP" >/dev/null; check_server "$s" || true; done
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Raw results: depth round server msgs_per_s ticks (or FAIL).
raw=$tmp/raw.tsv
: >"$raw"
for d in $DEPTHS; do
  for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${servers[@]}"; do
      check_server "$s" || true
      res=$(run_load "$s" "$d" "$SECS")
      log "depth $d round $r $s: $res"
      printf '%s\t%s\t%s\t%s\n' "$d" "$r" "$s" "$res" >>"$raw"
    done
  done
done

# the checkout the measured binary was built from (REACTOR_SRC, default here)
commit=$(git -C "${REACTOR_SRC:-.}" rev-parse --short HEAD 2>/dev/null || echo "no commit")
dirty=$(git -C "${REACTOR_SRC:-.}" status --porcelain 2>/dev/null | grep -q . && echo "+dirty" || true)
python3 - "$raw" "$hz" "$SECS" "$CONNS" "$LEN" "$ROUNDS" "$commit$dirty" "$load_start" "${servers[@]}" >"$tmp/table.md" <<'EOF'
import statistics, sys, platform, os
raw, hz, secs, conns, ln, rounds, commit, load0, *servers = sys.argv[1:]
hz, secs = int(hz), float(secs)
rows = {}   # (depth, round) -> server -> (msgs/s, msgs per CPU-s, cpu share) or None
for line in open(raw):
    d, r, s, res = line.rstrip("\n").split("\t")
    parts = res.split()
    key = (int(d), int(r))
    if parts[0] == "FAIL":
        rows.setdefault(key, {})[s] = None
        continue
    mps, ticks = float(parts[0]), int(parts[1])
    cpu = ticks / hz
    rows.setdefault(key, {})[s] = (mps, mps * secs / cpu if cpu > 0 else float("nan"), cpu / secs)

def k(x): return f"{x / 1e3:,.0f}k"
def ratio(a, b): return a / b if a and b else None
def fx(x): return "n/a" if x is None else f"{x:.2f}x"
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

others = [s for s in servers if s != "reactor"]
print(f"# Echo: reactor vs {' vs '.join(others)}\n")
print(f"{conns} connections, {ln}-byte messages, `epoll_load` on core 1, server on core 0 "
      f"(`taskset`); {rounds} rounds x {secs:g} s per server and depth, servers alternating. "
      f"msgs/CPU-s = messages / server (utime+stime) from `/proc/PID/stat`; "
      f"cpu = server CPU-s per wall second.  \n"
      f"commit {commit}, {platform.node()}, Linux {platform.release()}, {os.cpu_count()} cores; "
      f"load average {load0} at start, {' '.join(f'{x:.2f}' for x in os.getloadavg())} at end "
      f"(other work on the machine shows up as noise).\n")
summary = []
for depth in sorted({d for d, _ in rows}):
    print(f"## depth {depth}\n")
    hdr = ["round"] + [f"{s} msgs/s" for s in servers] + [f"{s} msgs/CPU-s (cpu)" for s in servers]
    hdr += [f"reactor/{o} msgs/s" for o in others] + [f"reactor/{o} msgs/CPU-s" for o in others]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    rat = {o: ([], []) for o in others}
    for (d, r) in sorted(k_ for k_ in rows if k_[0] == depth):
        got = rows[(d, r)]
        cells = [str(r)]
        cells += ["FAIL" if got.get(s) is None else k(got[s][0]) for s in servers]
        cells += ["FAIL" if got.get(s) is None else f"{k(got[s][1])} ({got[s][2]:.0%})" for s in servers]
        a = got.get("reactor")
        for o in others:
            b = got.get(o)
            rat[o][0].append(ratio(a and a[0], b and b[0]))
            rat[o][1].append(ratio(a and a[1], b and b[1]))
        cells += [fx(rat[o][0][-1]) for o in others] + [fx(rat[o][1][-1]) for o in others]
        print("| " + " | ".join(cells) + " |")
    medrow = ["**median**"]
    for s in servers:
        medrow.append(k(m) if (m := med([rows[kk][s][0] if rows[kk].get(s) else None
                                          for kk in rows if kk[0] == depth])) else "n/a")
    for s in servers:
        medrow.append(k(m) if (m := med([rows[kk][s][1] if rows[kk].get(s) else None
                                          for kk in rows if kk[0] == depth])) else "n/a")
    medrow += [f"**{fx(med(rat[o][0]))}**" for o in others] + [f"**{fx(med(rat[o][1]))}**" for o in others]
    print("| " + " | ".join(medrow) + " |\n")
    summary.append((depth, {o: (med(rat[o][0]), med(rat[o][1])) for o in others}))

print("## summary: median of per-round ratios\n")
hdr = ["depth"] + [f"reactor/{o} {m}" for o in others for m in ("msgs/s", "msgs/CPU-s")]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for depth, by in summary:
    print("| " + " | ".join([str(depth)] + [fx(x) for o in others for x in by[o]]) + " |")
fails = sum(1 for g in rows.values() for v in g.values() if v is None)
if fails:
    print(f"\n{fails} run(s) FAILED (see stderr).")
EOF
cat "$tmp/table.md"
if [[ -n $out_file ]]; then
  cp "$tmp/table.md" "$out_file"
  log "table written to $out_file"
fi
