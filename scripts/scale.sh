#!/usr/bin/env bash
# Scale evidence of issue 5, written into docs/PERFORMANCE.md (between
# `<!-- scale:begin/end -->`, so a rerun replaces it):
#   a. one `reactor serve --echo` holds as many connections as the open-files
#      limit allows (its --max-conns clamped below the limit, less its
#      reserve), every one verified by echo round trips (`reactor bench
#      echo`, closed loop: each connection has a message in flight from its
#      connect on, and a run with 0 errors had every one answered); while
#      full, further clients are refused: counted (`reactor bench idle`), the
#      refusal line checked, the log free of ERROR and panics, the server
#      still serving afterwards;
#   b. 100,000 concurrent echo connections over several `reactor serve
#      --reuse-port` processes sharing one port, from several `reactor bench
#      echo` processes (each process is capped at 20,000 fds) with sources
#      spread over 127.0.0.x (`--source-ips`); every one verified the same
#      way; the peak of concurrent connections counted from the servers'
#      open fds, and the servers' total RSS at that peak;
#   c. a chat room of 10,000 members receiving broadcasts (`reactor bench
#      chat`, one sender, a few line rates): fan-out latency p50/p99.
#
#   scripts/scale.sh [--quick] [--no-doc] [--only a|b|c]
#
# --quick: small numbers (2,000 / 6,000 / 1,000 connections), a smoke test
# of under a minute. Environment: REACTOR_BIN (else `cargo build
# --release`), REACTOR_SRC (its checkout, for the commit in the doc), DOC,
# KEEP_TMP=1 (keep the logs and JSON results in the temporary directory).
# Loopback only; every wait bounded; only processes started here are
# stopped, by pid.
set -euo pipefail

# shellcheck source=scripts/perf-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/perf-lib.sh" # and lib.sh
root=$(repo_root)
cd "$root"

quick=0 write_doc=1 only="a b c"
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --no-doc) write_doc=0 ;;
    --only) only=${2:?--only a, b or c}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
if ((quick)); then
  A_MAX=2000 A_EXTRA=100 A_SECS=10 A_TIMEOUT=3
  B_CONNS=6000 B_SERVERS=3 B_LOADS=3 B_IPS=20 B_SECS=12 B_TIMEOUT=5
  C_MEMBERS=1000 C_RATES="10" C_SECS=3 C_WARMUP=2
else
  A_MAX=20000 A_EXTRA=500 A_SECS=40 A_TIMEOUT=10
  B_CONNS=100000 B_SERVERS=6 B_LOADS=8 B_IPS=200 B_SECS=60 B_TIMEOUT=10
  C_MEMBERS=10000 C_RATES="1 10 50" C_SECS=10 C_WARMUP=5
fi
DOC=${DOC:-$root/docs/PERFORMANCE.md} REACTOR_SRC=${REACTOR_SRC:-$root}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-scale.XXXXXX")
# shellcheck disable=SC2016  # evaluated by the trap
if [[ ${KEEP_TMP:-0} == 1 ]]; then
  install_cleanup 'log "kept $tmp"'
else
  install_cleanup 'rm -rf "$tmp"'
fi
set_nofile 20000
nofile=$(ulimit -n)
t_all=$SECONDS
if [[ -n ${REACTOR_BIN:-} ]]; then
  reactor=$REACTOR_BIN
else
  cargo build --release --quiet >&2
  reactor=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/reactor
fi
[[ -x $reactor ]] || die "missing $reactor"
facts=$tmp/facts.tsv # key<TAB>value, read by the report at the end
: >"$facts"
fact() { printf '%s\t%s\n' "$1" "$2" >>"$facts"; }
fact machine "$(machine_desc)"
fact source "$(source_desc "$REACTOR_SRC")"
fact sysctls "$(sysctl_desc)"
fact nofile "$nofile"
fact loadavg0 "$(cut -d' ' -f1-3 /proc/loadavg)"

# serve LOG [--cpu N] ARGS...: start `reactor serve ARGS` (pinned to core N
# with --cpu), wait for "ready"; SPAWNED.
serve() {
  local logf=$1 pin=(); shift
  if [[ $1 == --cpu ]]; then pin=(taskset -c "$2"); shift 2; fi
  spawn "$logf" "${pin[@]}" "$reactor" serve "$@"
  wait_log "$logf" ": ready" "$SPAWNED" 10 || { cat "$logf" >&2; die "server did not start"; }
}

# stop_server PID LOG KEY: SIGTERM, wait; record its exit status, its final
# counters and any ERROR or panic line in its log.
stop_server() {
  local pid=$1 logf=$2 key=$3 bad
  stop_pid "$pid" TERM 15
  fact "$key.exit" "$STOP_RC"
  fact "$key.stopped" "$(grep -o 'stopped: .*' "$logf" | tail -1)"
  bad=$(grep -cE '^[^ ]+ +ERROR|panick' "$logf" || true)
  fact "$key.error_lines" "$bad"
  ((bad == 0)) || grep -E '^[^ ]+ +ERROR|panick' "$logf" | head -5 >&2
}

# wait_exit PID SECS: wait up to SECS for PID (spawned here) to exit.
wait_exit() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do alive "$1" || return 0; sleep 0.1; done
  return 1
}

# --- a. one process at its open-files limit -------------------------------
part_a() {
  step_header "a. one server at the open-files limit"
  local t0=$SECONDS port spid cap base lpid i n full_at=
  port=$(free_ports 1)
  serve "$tmp/a-server.log" --echo "127.0.0.1:$port" --max-conns "$A_MAX" --log-level info
  spid=$SPAWNED
  cap=$(sed -nE 's/.*max-conns per loop .* using ([0-9]+)$/\1/p' "$tmp/a-server.log" | head -1)
  cap=${cap:-$A_MAX}
  base=$(fd_count "$spid")
  fact a.cap "$cap"
  fact a.max_conns_flag "$A_MAX"
  fact a.base_fds "$base"
  fact a.rss0_kib "$(rss_kib "$spid")"
  log "server pid $spid, port $port, max-conns $cap, $base fds before load"
  spawn "$tmp/a-echo.log" "$reactor" bench echo "127.0.0.1:$port" -c "$cap" -d "$A_SECS" \
    --timeout "${A_TIMEOUT}s" --pid "$spid" --json "$tmp/a-echo.json" -q
  lpid=$SPAWNED
  for ((i = 0; i < (A_SECS - 5) * 10; i++)); do
    n=$(($(fd_count "$spid") - base))
    if ((n >= cap)); then full_at=$(awk -v t="$i" 'BEGIN {print t / 10}'); break; fi
    alive "$lpid" || break
    sleep 0.1
  done
  [[ -n $full_at ]] || die "the server never held $cap connections (held $n)"
  fact a.full_after_s "$full_at"
  fact a.timeout_s "$A_TIMEOUT"
  fact a.held "$n"
  fact a.rss_full_kib "$(rss_kib "$spid")"
  log "full: $n connections after ${full_at}s"
  # What a refused client reads: the refusal line, then EOF.
  fact a.refusal_line "$(python3 - "$port" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
got = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    got += b
print(repr(got))
EOF
)"
  "$reactor" bench idle "127.0.0.1:$port" -c "$A_EXTRA" --hello 'hi\n' -d 2s \
    --json "$tmp/a-idle.json" -q >"$tmp/a-idle.log" 2>&1 || true
  fact a.extra "$A_EXTRA"
  fact a.extra_closed "$(json_field "$tmp/a-idle.json" workload_counters connections_closed_by_server)"
  fact a.extra_opened "$(json_field "$tmp/a-idle.json" workload_counters connections_opened)"
  fact a.still_held "$(($(fd_count "$spid") - base))"
  wait_exit "$lpid" $((A_SECS + 60)) || die "bench echo did not finish"
  wait "$lpid" || true
  cp "$tmp/a-echo.json" "$tmp/a-echo.result.json"
  # Still serving once the crowd has gone.
  "$reactor" bench echo "127.0.0.1:$port" -c 10 -d 1s --json "$tmp/a-after.json" -q >/dev/null 2>&1 || true
  fact a.after_requests "$(json_field "$tmp/a-after.json" requests)"
  fact a.after_errors "$(json_field "$tmp/a-after.json" errors)"
  fact a.alive_after "$(alive "$spid" && echo yes || echo no)"
  stop_server "$spid" "$tmp/a-server.log" a
  fact a.took_s $((SECONDS - t0))
  step_done
}

# --- b. 100,000 connections over SO_REUSEPORT servers ---------------------
part_b() {
  step_header "b. $B_CONNS connections, $B_SERVERS servers, $B_LOADS load processes"
  local t0=$SECONDS port i spids=() lpids=() base=0 rss0=0 per rem c n rss peak=0 peak_rss=0 peak_t=0 t k tl0 full_at='' sock=''
  port=$(free_ports 1)
  for ((i = 0; i < B_SERVERS; i++)); do
    serve "$tmp/b-server-$i.log" --echo "127.0.0.1:$port" --reuse-port --max-conns 20000 --log-level info
    spids+=("$SPAWNED")
    base=$((base + $(fd_count "$SPAWNED"))) rss0=$((rss0 + $(rss_kib "$SPAWNED")))
  done
  fact b.rss0_kib "$rss0"
  fact b.servers "$B_SERVERS"
  fact b.caps "$(cat "$tmp"/b-server-*.log | sed -nE 's/.*using ([0-9]+)$/\1/p' | sort -u | tr '\n' ' ')"
  per=$((B_CONNS / B_LOADS)) rem=$((B_CONNS % B_LOADS))
  for ((i = 0; i < B_LOADS; i++)); do
    c=$((per + (i < rem ? 1 : 0)))
    spawn "$tmp/b-load-$i.log" "$reactor" bench echo "127.0.0.1:$port" -c "$c" \
      --source-ips "$B_IPS" -d "$B_SECS" --timeout "${B_TIMEOUT}s" --json "$tmp/b-load-$i.json" -q
    lpids+=("$SPAWNED")
  done
  fact b.loads "$B_LOADS"
  fact b.conns "$B_CONNS"
  fact b.source_ips "$B_IPS"
  # Watch the servers' open fds (less what they held before the load) and
  # their RSS about once a second until every load process is done.
  tl0=$SECONDS
  for ((k = 0; k < B_SECS + 120; k++)); do
    t=$((SECONDS - tl0)) n=-$base rss=0
    for i in "${spids[@]}"; do
      n=$((n + $(fd_count "$i"))) rss=$((rss + $(rss_kib "$i" || echo 0)))
    done
    if ((n > peak)); then
      peak=$n peak_rss=$rss peak_t=$t sock=$(grep '^TCP:' /proc/net/sockstat)
    fi
    [[ -z $full_at ]] && ((n >= B_CONNS)) && full_at=$t
    ((k % 5 == 0)) && log "t=${t}s: $n connections held, servers' RSS $((rss / 1024)) MiB"
    c=0
    for i in "${lpids[@]}"; do alive "$i" && c=$((c + 1)); done
    ((c == 0 || t > B_SECS + 120)) && break
    sleep 1
  done
  fact b.full_at_s "${full_at:-never}"
  fact b.timeout_s "$B_TIMEOUT"
  for i in "${lpids[@]}"; do
    wait_exit "$i" 30 || die "load process $i did not finish"
    wait "$i" || true
  done
  fact b.peak "$peak"
  fact b.peak_at_s "$peak_t"
  fact b.peak_rss_kib "$peak_rss"
  fact b.sockstat "$sock"
  fact b.load_done_s $((SECONDS - t0))
  for ((i = 0; i < B_SERVERS; i++)); do
    stop_server "${spids[$i]}" "$tmp/b-server-$i.log" "b.server$i"
  done
  fact b.took_s $((SECONDS - t0))
  step_done
}

# --- c. a chat room of 10,000 members -------------------------------------
part_c() {
  step_header "c. a chat room of $C_MEMBERS members"
  local t0=$SECONDS port spid base rate i
  port=$(free_ports 1)
  # Server on core 0, the members' generator on core 1, as in the comparisons.
  serve "$tmp/c-server.log" --cpu 0 --chat "127.0.0.1:$port" --max-conns 20000 --log-level info
  spid=$SPAWNED
  base=$(fd_count "$spid")
  for rate in $C_RATES; do
    # --source-ips: several runs in a row from one address can meet
    # EADDRNOTAVAIL while the last run's ports sit in TIME_WAIT.
    taskset -c 1 "$reactor" bench chat "127.0.0.1:$port" -c "$C_MEMBERS" --senders 1 --rate "$rate" \
      --source-ips 50 -d "$C_SECS" --warmup "$C_WARMUP" --timeout 10s --pid "$spid" \
      --json "$tmp/c-$rate.json" -q >"$tmp/c-$rate.log" 2>&1 || true
    log "rate $rate lines/s: $(grep -E '^  total|^Errors|^Verdict|^INVALID' "$tmp/c-$rate.log" | tr '\n' ' ')"
    # The members are gone before the next rate (bounded wait).
    for ((i = 0; i < 300; i++)); do (($(fd_count "$spid") <= base)) && break; sleep 0.1; done
  done
  fact c.members "$C_MEMBERS"
  fact c.rates "$C_RATES"
  fact c.secs "$C_SECS"
  stop_server "$spid" "$tmp/c-server.log" c
  fact c.took_s $((SECONDS - t0))
  step_done
}

for p in $only; do
  case $p in a) part_a ;; b) part_b ;; c) part_c ;; *) die "unknown part $p" ;; esac
done
fact took_s $((SECONDS - t_all))
fact loadavg1 "$(cut -d' ' -f1-3 /proc/loadavg)"
fact quick "$quick"

python3 - "$tmp" >"$tmp/block.md" <<'EOF'
import glob, json, os, re, sys
tmp = sys.argv[1]
f = {}
for line in open(f"{tmp}/facts.tsv"):
    k, _, v = line.rstrip("\n").partition("\t")
    f[k] = v
def j(name):
    try:
        return json.load(open(f"{tmp}/{name}"))
    except (OSError, ValueError):
        return None
def mib(kib): return f"{int(kib) / 1024:,.1f} MiB"
def ms(us): return f"{us / 1e3:,.1f} ms" if us >= 1000 else f"{us:,.0f} us"
def stopped(key):
    s = f.get(f"{key}.stopped", "")
    kv = dict(p.split("=", 1) for p in s.split()[1:] if "=" in p)
    return kv
quick = f.get("quick") == "1"
print(f"## Scale: `scripts/scale.sh{' --quick' if quick else ''}`\n")
print(f"Generated; a rerun replaces this section. Machine: {f['machine']}; reactor at commit "
      f"{f['source']}. Load average {f['loadavg0']} at the start, {f['loadavg1']} at the end "
      f"(2 cores shared with other work). Took {int(f['took_s']) // 60} min {int(f['took_s']) % 60} s.  ")
print(f"Kernel settings: {f['sysctls']}; the scripts run with `ulimit -n {f['nofile']}`.\n")
if "a.cap" in f:
    e = j("a-echo.result.json") or {}
    st = stopped("a")
    horizon = float(f["a.full_after_s"]) + float(f["a.timeout_s"]) < e.get("duration_s", 0)
    ok = (e.get("errors") == 0 and e.get("requests", 0) >= int(f["a.cap"]) and horizon
          and f.get("a.extra_closed") == f.get("a.extra") and f.get("a.error_lines") == "0"
          and f.get("a.alive_after") == "yes" and f.get("a.after_errors") == "0")
    print(f"### a. One process at the open-files limit ({'PASS' if ok else 'FAIL'})\n")
    print(f"`reactor serve --echo --max-conns {f['a.max_conns_flag']}`: clamped to **{int(f['a.cap']):,}** "
          f"connections (the limit of {f['nofile']} open files less the fds in use and its reserve). "
          f"`reactor bench echo -c {int(f['a.cap']):,}` (64-byte messages, depth 1, closed loop, "
          f"{e.get('duration_s', 0):.0f} s, timeout {f['a.timeout_s']} s) filled it in {f['a.full_after_s']} s; "
          f"then {f['a.extra']} more clients came (`reactor bench idle --hello 'hi\\n'`). "
          "Why 0 errors means every connection made a verified round trip: in closed loop a "
          "connection sends its first message as soon as its connect completes; a connect or an "
          "answer slower than the timeout is a `timeout` error, a wrong byte a `verify` error, and "
          "whatever is in flight at the end is waited for (then counted as a timeout); the "
          "connections were all up well before the run's last timeout period began "
          f"({'yes' if horizon else 'NO'}: full at {f['a.full_after_s']} s + {f['a.timeout_s']} s "
          f"< {e.get('duration_s', 0):.0f} s), so none can have stayed unconnected unnoticed.\n")
    print("| what | measured |")
    print("|---|---|")
    print(f"| connections held at once (server's fds less {f['a.base_fds']} before) | {int(f['a.held']):,} |")
    print(f"| echo round trips, all verified byte for byte | {e.get('requests', 0):,} "
          f"({e.get('requests_per_sec', 0):,.0f}/s), errors {e.get('errors')} {e.get('errors_by_kind')} |")
    lat = e.get("latency_us") or {}
    if lat:
        print(f"| round-trip latency p50 / p99 / max with {int(f['a.cap']):,} connections busy | "
              f"{ms(lat['p50'])} / {ms(lat['p99'])} / {ms(lat['max'])} |")
    print(f"| server RSS: idle, full | {mib(f['a.rss0_kib'])}, {mib(f['a.rss_full_kib'])} |")
    print(f"| extra clients refused (closed by the server) | {f.get('a.extra_closed')} of {f.get('a.extra_opened')} |")
    print(f"| what a refused client reads | `{f.get('a.refusal_line')}` |")
    print(f"| connections still held during the refusals | {int(f['a.still_held']):,} |")
    print(f"| server's own count at exit | accepted={st.get('accepted')} refused={st.get('refused')} "
          f"accept_errors={st.get('accept_errors')} |")
    print(f"| ERROR or panic lines in its log; exit status on SIGTERM | {f['a.error_lines']}; {f['a.exit']} |")
    print(f"| afterwards: `bench echo -c 10 -d 1s` | {f.get('a.after_requests')} round trips, "
          f"{f.get('a.after_errors')} errors |\n")
if "b.peak" in f:
    loads = [j(os.path.basename(p)) for p in sorted(glob.glob(f"{tmp}/b-load-*.json"))]
    loads = [x for x in loads if x]
    conns = sum(x["config"]["connections"] for x in loads)
    errs = sum(x["errors"] for x in loads)
    reqs = sum(x["requests"] for x in loads)
    fewest = min((x["requests"] / x["config"]["connections"] for x in loads), default=0)
    peak = int(f["b.peak"])
    ns = int(f["b.servers"])
    acc = [stopped(f"b.server{i}") for i in range(ns)]
    full = f.get("b.full_at_s", "never")
    dur = min((x["duration_s"] for x in loads), default=0)
    horizon = full != "never" and float(full) + float(f["b.timeout_s"]) < dur
    ok = (len(loads) == int(f["b.loads"]) and errs == 0 and conns == int(f["b.conns"]) and horizon
          and peak >= int(f["b.conns"]) and all(f.get(f"b.server{i}.error_lines") == "0" for i in range(ns)))
    print(f"### b. {int(f['b.conns']):,} concurrent connections over {ns} processes ({'PASS' if ok else 'FAIL'})\n")
    print(f"{ns} x `reactor serve --echo 127.0.0.1:PORT --reuse-port --max-conns 20000` (each clamped to "
          f"{f['b.caps'].strip()} by its {f['nofile']}-fd limit), {f['b.loads']} x `reactor bench echo -c N "
          f"--source-ips {f['b.source_ips']}` (sources 127.0.0.1-{f['b.source_ips']}), closed loop, depth 1, "
          f"64-byte messages, timeout {f['b.timeout_s']} s, all started together and each run for "
          f"{dur:.0f} s. Every connection verified as in a.: 0 errors, and all "
          f"{int(f['b.conns']):,} connections were up at {full} s, more than the timeout "
          f"before the end ({'yes' if horizon else 'NO'}).\n" if loads else "")
    print("| what | measured |")
    print("|---|---|")
    print(f"| concurrent connections at the peak (servers' fds less their own before) | **{peak:,}** "
          f"(at {f['b.peak_at_s']} s) |")
    grow = (int(f['b.peak_rss_kib']) - int(f['b.rss0_kib'])) * 1024 / max(peak, 1)
    print(f"| servers' total RSS at the peak (before the load) | **{mib(f['b.peak_rss_kib'])}** "
          f"({mib(f['b.rss0_kib'])}): {grow:,.0f} B per connection, busy (buffers in use) |")
    print(f"| kernel TCP sockets at the peak (`/proc/net/sockstat`, both ends; mem in pages) | `{f['b.sockstat']}` |")
    print(f"| connections opened by the load processes | {conns:,} |")
    print(f"| echo round trips, all verified | {reqs:,} (per connection, the lowest process "
          f"average: {fewest:.1f}); errors {errs} |")
    print(f"| accepted per server (SO_REUSEPORT spread) | {', '.join(a.get('accepted', '?') for a in acc)} |")
    print(f"| refused per server | {', '.join(a.get('refused', '?') for a in acc)} |")
    print(f"| ERROR or panic lines in the servers' logs | "
          f"{sum(int(f.get(f'b.server{i}.error_lines', 1)) for i in range(ns))} |")
    inval = sorted({re.sub(r"[0-9]+%", "N%", re.sub(r"thread [0-9]+", "thread", r))
                    for x in loads for r in x.get("invalid_reasons", [])})
    print(f"| load processes' own verdicts | {sum(x['valid'] for x in loads)} of {len(loads)} valid"
          + (f" (others: {'; '.join(inval)[:300]})" if inval else "") + " |\n")
if "c.members" in f:
    st = stopped("c")
    print(f"### c. A chat room of {int(f['c.members']):,} members\n")
    print(f"`reactor serve --chat --max-conns 20000` on core 0; on core 1 `reactor bench chat -c {int(f['c.members']):,} "
          f"--senders 1 --rate R --source-ips 50 -d {f['c.secs']}` after a warmup (the members join and are "
          "measured only once all are in): every line goes to the other "
          f"{int(f['c.members']) - 1:,} members; latency from the line's intended send time to its "
          "arrival at each member (one sample per delivery).\n")
    print("| lines/s | deliveries/s | fan-out p50 | p90 | p99 | p99.9 | max | lost | errors | server CPU | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for rate in f["c.rates"].split():
        r = j(f"c-{rate}.json")
        if not r:
            print(f"| {rate} | FAIL | | | | | | | | | |"); continue
        l, w, s = r["latency_us"], r["workload_counters"], r.get("server") or {}
        verdict = "valid" if r["valid"] else "INVALID: " + "; ".join(r["invalid_reasons"])
        print(f"| {rate} | {r['requests_per_sec']:,.0f} | {ms(l['p50'])} | {ms(l['p90'])} | {ms(l['p99'])} | "
              f"{ms(l['p999'])} | {ms(l['max'])} | {w.get('lost')} of {w.get('deliveries_owed'):,} | "
              f"{r['errors']} | {s.get('cpu_util', 0):.0%} | {verdict} |")
    print(f"\nServer at exit: exit status {f['c.exit']}, {f['c.error_lines']} ERROR or panic lines, "
          f"accepted={st.get('accepted')} refused={st.get('refused')} slow_dropped={st.get('slow_dropped')}.")
EOF
cat "$tmp/block.md"
if ((write_doc)); then
  doc_block "$DOC" scale "$tmp/block.md"
  log "written to $DOC (between <!-- scale:begin/end -->)"
fi
printf '%s\n' "${STEP_TIMES[@]}" >&2
