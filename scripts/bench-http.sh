#!/usr/bin/env bash
# HTTP `GET /` throughput and CPU cost: reactor --http against epoll_http,
# nginx (one worker) and hyper-hello, side by side on one machine.
#
#   scripts/bench-http.sh [OUT.md]
#
# Server on core 0, load on core 1 (`taskset`). Two loads on `GET /`:
#   wrk    `wrk -t1 -c100 -d${SECS}s`          keep-alive, one request in flight
#   h2load `h2load --h1 -c10 -m16 -n $H2_N`    pipelined, 16 in flight
# Rounds alternate the servers (A B C D A B C D ...). For every run the
# server's utime+stime is read from /proc/PID/stat before and after the load
# (for nginx: its worker process, not the master), giving requests per
# server CPU-second as well as requests per second. Prints a markdown table
# (and writes it to OUT.md if given): each round's figures and the median of
# the per-round ratios reactor/X.
#
# Environment (defaults in brackets):
#   ROUNDS [3]  rounds per load     SECS [5]  seconds per wrk run
#   H2_N [400000]  requests per h2load run
#   LOADS ["wrk h2load"]  which loads to run
#   WARMUP [1]  seconds of unmeasured wrk load per server first (0: none)
#   PEERS_OUT [/tmp/reactor-peers]  where ../shared/peers/build.sh puts peers
#   SKIP_BUILD [0]  1: use the existing peers and target/release/reactor
#   REACTOR_BIN [$CARGO_TARGET_DIR or target, /release/reactor]  the binary to measure
#   REACTOR_SRC [.]  the checkout REACTOR_BIN was built from (for the commit shown)
#   REACTOR_BASE []  another reactor binary (an older build) to run as one
#                    more server, "reactor-base": its column gives before/after
# nginx listens on 127.0.0.1:7080 (fixed by the peers' nginx.conf), prefix
# /tmp/ng; the port must be free.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root=$(repo_root)
cd "$root"

ROUNDS=${ROUNDS:-3} SECS=${SECS:-5} H2_N=${H2_N:-400000} LOADS=${LOADS:-"wrk h2load"}
WARMUP=${WARMUP:-1} PEERS_OUT=${PEERS_OUT:-/tmp/reactor-peers} SKIP_BUILD=${SKIP_BUILD:-0}
PEERS_SRC=$root/../shared/peers
NGINX_PREFIX=/tmp/ng NGINX_PORT=7080
out_file=${1:-}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $ROUNDS -le 100 ]] || die "ROUNDS must be 1..100"
[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "SECS must be a whole number of seconds (wrk -d)"
[[ $H2_N =~ ^[1-9][0-9]*$ ]] || die "H2_N must be a positive integer"
for l in $LOADS; do [[ $l == wrk || $l == h2load ]] || die "unknown load $l"; done
(($(nproc) >= 2)) || die "needs 2 cores (server on 0, load on 1)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-bench-http.XXXXXX")
nginx_conf=$PEERS_SRC/nginx.conf
nginx_started=0
# Stop nginx the way it is meant to be stopped (its master reaps the worker),
# then the EXIT trap's kill_spawned takes care of anything left.
stop_nginx() {
  if ((nginx_started)); then
    nginx -p "$NGINX_PREFIX" -c "$nginx_conf" -s stop 2>/dev/null || true
    nginx_started=0
  fi
}
install_cleanup 'stop_nginx; rm -rf "$tmp"'
raise_nofile

if [[ $SKIP_BUILD != 1 ]]; then
  log "building peers into $PEERS_OUT"
  "$PEERS_SRC/build.sh" "$PEERS_OUT" >&2
  log "building reactor (release)"
  cargo build --release --quiet >&2
fi
reactor=${REACTOR_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/reactor}
for f in "$reactor" "$PEERS_OUT/epoll_http" "$PEERS_OUT/hyper-hello"; do
  [[ -x $f ]] || die "missing $f"
done
for t in wrk h2load nginx taskset; do
  command -v "$t" >/dev/null || die "missing $t (../shared/peers/build.sh installs it)"
done
[[ -f $nginx_conf ]] || die "missing $nginx_conf"
if (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null; then
  die "port $NGINX_PORT is taken; nginx needs it"
fi
servers=(reactor epoll_http nginx hyper-hello)
if [[ -n ${REACTOR_BASE:-} ]]; then
  [[ -x $REACTOR_BASE ]] || die "missing $REACTOR_BASE (REACTOR_BASE)"
  servers+=(reactor-base)
fi
hz=$(getconf CLK_TCK)

# Start every server once, pinned to core 0; the idle ones use no CPU while
# another is measured.
declare -A pid port cpu_pid reported
mapfile -t ports < <(free_ports 4)
((${#ports[@]} == 4)) || die "could not pick free ports"
port[reactor]=${ports[0]} port[epoll_http]=${ports[1]} port[hyper-hello]=${ports[2]}
port[reactor-base]=${ports[3]}
port[nginx]=$NGINX_PORT
mkdir -p "$NGINX_PREFIX/logs"
for s in "${servers[@]}"; do
  p=${port[$s]}
  case $s in
    reactor) cmd=("$reactor" serve --http "127.0.0.1:$p" --log-level warn) ;;
    reactor-base) cmd=("$REACTOR_BASE" serve --http "127.0.0.1:$p" --log-level warn) ;;
    epoll_http) cmd=("$PEERS_OUT/epoll_http" "$p") ;;
    nginx) cmd=(nginx -p "$NGINX_PREFIX" -c "$nginx_conf") ;;
    hyper-hello) cmd=("$PEERS_OUT/hyper-hello" "127.0.0.1:$p") ;;
  esac
  spawn "$tmp/$s.log" taskset -c 0 "${cmd[@]}"
  pid[$s]=$SPAWNED cpu_pid[$s]=$SPAWNED
  [[ $s == nginx ]] && nginx_started=1
done
for s in "${servers[@]}"; do
  wait_tcp "${port[$s]}" "${pid[$s]}" 10 || { cat "$tmp/$s.log" >&2; die "$s did not start"; }
done
# nginx: the CPU that matters is the (single) worker's, a child of the master.
for ((i = 0; i < 100; i++)); do
  w=$(pgrep -P "${pid[nginx]}" | head -1) || true
  [[ -n $w ]] && break
  sleep 0.05
done
[[ -n ${w:-} ]] || die "no nginx worker under master ${pid[nginx]}"
cpu_pid[nginx]=$w
for s in "${servers[@]}"; do
  log "$s: pid ${pid[$s]} (cpu from ${cpu_pid[$s]}), port ${port[$s]}"
  body=$(curl -s --max-time 5 "http://127.0.0.1:${port[$s]}/") || true
  [[ $body == "Hello, client!" ]] || die "$s: GET / gave '${body:0:60}', want 'Hello, client!'"
done

# check_server SERVER: in the main shell (so `wait` can reap it), say once
# why a server is gone, with the end of its log.
check_server() {
  local s=$1 st=0
  alive "${cpu_pid[$s]}" && return 0
  [[ -n ${reported[$s]:-} ]] && return 1
  reported[$s]=1
  wait "${pid[$s]}" 2>/dev/null || st=$?
  log "$s (pid ${pid[$s]}) exited with status $st; its log ends:"
  tail -n 20 "$tmp/$s.log" | sed 's/^/    /' >&2
  return 1
}

# run_load LOAD SERVER SECS: one wrk or h2load run on core 1. Prints
# "REQS_PER_S REQUESTS TICKS" or "FAIL reason" on stdout.
run_load() {
  local load=$1 s=$2 t=$3 t0 t1 outp rc=0 url rps reqs
  alive "${cpu_pid[$s]}" || { echo "FAIL server-exited"; return; }
  url=http://127.0.0.1:${port[$s]}/
  t0=$(cpu_ticks "${cpu_pid[$s]}")
  case $load in
    wrk)
      outp=$(taskset -c 1 timeout -k 5 $((t + 30)) wrk -t1 -c100 "-d${t}s" "$url" 2>&1) || rc=$?
      ;;
    h2load)
      outp=$(taskset -c 1 timeout -k 5 120 h2load --h1 -c10 -m16 -n "$H2_N" "$url" 2>&1) || rc=$?
      ;;
  esac
  t1=$(cpu_ticks "${cpu_pid[$s]}" 2>/dev/null || echo x)
  if ((rc != 0)) || [[ $t1 == x ]]; then
    log "$s $load: rc=$rc: $outp"
    echo "FAIL rc=$rc"
    return
  fi
  case $load in
    wrk)
      # "  123456 requests in 5.00s, ..." and "Requests/sec: 24691.20";
      # "Non-2xx" or "Socket errors" lines mean a broken run.
      reqs=$(awk '/ requests in / {print $1}' <<<"$outp")
      rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$outp")
      if grep -qE 'Non-2xx|Socket errors' <<<"$outp"; then
        log "$s wrk: errors: $(grep -E 'Non-2xx|Socket errors' <<<"$outp")"
        echo "FAIL errors"
        return
      fi
      ;;
    h2load)
      # "finished in 1.56s, 256410.26 req/s, ..." and
      # "requests: N total, N started, N done, N succeeded, 0 failed, ..."
      rps=$(sed -nE 's/^finished in [0-9.]+m?s, ([0-9.]+) req\/s.*/\1/p' <<<"$outp")
      reqs=$(sed -nE 's/^requests: .* ([0-9]+) succeeded, ([0-9]+) failed.*/\1 \2/p' <<<"$outp")
      if [[ ${reqs#* } != 0 || ${reqs% *} != "$H2_N" ]]; then
        log "$s h2load: not all requests succeeded: $(grep '^requests:' <<<"$outp")"
        echo "FAIL errors"
        return
      fi
      reqs=${reqs% *}
      ;;
  esac
  if [[ -z $rps || -z $reqs ]]; then
    log "$s $load: could not parse: $outp"
    echo "FAIL parse"
    return
  fi
  echo "$rps $reqs $((t1 - t0))"
}

if [[ $WARMUP != 0 ]]; then
  for s in "${servers[@]}"; do run_load wrk "$s" "$WARMUP" >/dev/null; check_server "$s" || true; done
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Raw results: load round server reqs_per_s requests ticks (or FAIL).
raw=$tmp/raw.tsv
: >"$raw"
for load in $LOADS; do
  for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${servers[@]}"; do
      check_server "$s" || true
      res=$(run_load "$load" "$s" "$SECS")
      log "$load round $r $s: $res"
      printf '%s\t%s\t%s\t%s\n' "$load" "$r" "$s" "$res" >>"$raw"
    done
  done
done

stop_nginx

# the checkout the measured binary was built from (REACTOR_SRC, default here)
commit=$(git -C "${REACTOR_SRC:-.}" rev-parse --short HEAD 2>/dev/null || echo "no commit")
dirty=$(git -C "${REACTOR_SRC:-.}" status --porcelain 2>/dev/null | grep -q . && echo "+dirty" || true)
python3 - "$raw" "$hz" "$SECS" "$H2_N" "$ROUNDS" "$commit$dirty" "$load_start" "${servers[@]}" >"$tmp/table.md" <<'EOF'
import statistics, sys, platform, os
raw, hz, secs, h2n, rounds, commit, load0, *servers = sys.argv[1:]
hz = int(hz)
rows = {}   # (load, round) -> server -> (req/s, req per CPU-s, cpu-s) or None
for line in open(raw):
    load, r, s, res = line.rstrip("\n").split("\t")
    parts = res.split()
    key = (load, int(r))
    if parts[0] == "FAIL":
        rows.setdefault(key, {})[s] = None
        continue
    rps, reqs, ticks = float(parts[0]), int(parts[1]), int(parts[2])
    cpu = ticks / hz
    rows.setdefault(key, {})[s] = (rps, reqs / cpu if cpu > 0 else None, cpu)

def k(x): return "n/a" if x is None else f"{x / 1e3:,.0f}k"
def ratio(a, b): return a / b if a and b else None
def fx(x): return "n/a" if x is None else f"{x:.2f}x"
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

desc = {
    "wrk": f"`wrk -t1 -c100 -d{secs}s`, keep-alive, `GET /`",
    "h2load": f"`h2load --h1 -c10 -m16 -n {h2n}`, pipelined, `GET /`",
}
others = [s for s in servers if s != "reactor"]
print(f"# HTTP `GET /`: reactor vs {' vs '.join(others)}\n")
print(f"Server on core 0, load generator on core 1 (`taskset`); {rounds} rounds per load, "
      f"servers alternating. req/CPU-s = requests / server (utime+stime) from "
      f"`/proc/PID/stat` (nginx: its one worker); cpu = server CPU-seconds used in the run.  \n"
      f"commit {commit}, {platform.node()}, Linux {platform.release()}, {os.cpu_count()} cores; "
      f"load average {load0} at start, {' '.join(f'{x:.2f}' for x in os.getloadavg())} at end.\n")
summary = []
for load in [l for l in ("wrk", "h2load") if any(kk[0] == l for kk in rows)]:
    print(f"## {desc[load]}\n")
    hdr = ["round"] + [f"{s} req/s" for s in servers] + [f"{s} req/CPU-s (cpu)" for s in servers]
    hdr += [f"reactor/{o} req/s" for o in others] + [f"reactor/{o} req/CPU-s" for o in others]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    rat = {o: ([], []) for o in others}
    for key in sorted(kk for kk in rows if kk[0] == load):
        got = rows[key]
        cells = [str(key[1])]
        cells += ["FAIL" if got.get(s) is None else k(got[s][0]) for s in servers]
        cells += ["FAIL" if got.get(s) is None else f"{k(got[s][1])} ({got[s][2]:.2f}s)" for s in servers]
        a = got.get("reactor")
        for o in others:
            b = got.get(o)
            rat[o][0].append(ratio(a and a[0], b and b[0]))
            rat[o][1].append(ratio(a and a[1], b and b[1]))
        cells += [fx(rat[o][0][-1]) for o in others] + [fx(rat[o][1][-1]) for o in others]
        print("| " + " | ".join(cells) + " |")
    medrow = ["**median**"]
    for i in (0, 1):
        for s in servers:
            medrow.append(k(med([rows[kk][s][i] if rows[kk].get(s) else None
                                 for kk in rows if kk[0] == load])))
    medrow += [f"**{fx(med(rat[o][0]))}**" for o in others] + [f"**{fx(med(rat[o][1]))}**" for o in others]
    print("| " + " | ".join(medrow) + " |\n")
    summary.append((load, {o: (med(rat[o][0]), med(rat[o][1])) for o in others}))

print("## summary: median of per-round ratios reactor/X\n")
hdr = ["load"] + [f"reactor/{o} {m}" for o in others for m in ("req/s", "req/CPU-s")]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for load, by in summary:
    print("| " + " | ".join([load] + [fx(x) for o in others for x in by[o]]) + " |")
fails = sum(1 for g in rows.values() for v in g.values() if v is None)
if fails:
    print(f"\n{fails} run(s) FAILED (see stderr).")
EOF
cat "$tmp/table.md"
if [[ -n $out_file ]]; then
  cp "$tmp/table.md" "$out_file"
  log "table written to $out_file"
fi
