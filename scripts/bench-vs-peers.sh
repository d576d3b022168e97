#!/usr/bin/env bash
# Every side-by-side comparison of issue 5 in one run, written into
# docs/PERFORMANCE.md (between `<!-- bench-vs-peers:begin/end -->`, so a
# rerun replaces it) with the machine it ran on.
#
#   scripts/bench-vs-peers.sh [--quick] [--no-doc]
#
# Servers on core 0, load on core 1 (`taskset`); rounds alternate the
# servers (A B C A B C ...); medians of the per-round ratios, of throughput
# and of work per server CPU-second (utime+stime from /proc/PID/stat).
#   1. echo vs epoll_echo and tokio-echo, epoll_load, depth 1 and 16
#      (scripts/bench-echo.sh);
#   2. HTTP `GET /` vs epoll_http, nginx and hyper-hello, wrk -t1 -c100 and
#      h2load pipelined (scripts/bench-http.sh);
#   3. connection rate: greet (connect, read the greeting to EOF, close) with
#      `reactor bench connect`, against nginx's stream `return` (the same
#      protocol); and accept-and-close (connect, FIN, read to EOF, close)
#      with a small C client built here, since `reactor bench connect` waits
#      for a greeting that epoll_echo and nginx's HTTP never send: reactor
#      greet and echo against epoll_echo and nginx (HTTP and stream);
#   4. UDP echo: `reactor bench udp` at a sweep of rates, datagrams echoed per
#      second and loss (no UDP peer exists in ../shared/peers).
#
# --quick: 2 short rounds of everything (a smoke test, about a minute and a
# half); --no-doc: print the tables, leave docs/PERFORMANCE.md alone.
# Environment: ROUNDS, SECS (echo/wrk seconds), H2_N (h2load requests),
# CR_SECS (connection-rate seconds), UDP_RATES, UDP_SECS, PEERS_OUT
# [/tmp/reactor-peers], REACTOR_BIN (measure this binary; else `cargo build
# --release` here), REACTOR_SRC (checkout REACTOR_BIN was built from, for
# the commit named in the doc; default this one), DOC [docs/PERFORMANCE.md].
# Needs port 7080 free (nginx, as ../shared/peers/nginx.conf fixes it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/perf-lib.sh
. "$here/perf-lib.sh" # and lib.sh
root=$(repo_root)
cd "$root"

doc_flags "$@"
if ((quick)); then
  ROUNDS=${ROUNDS:-2} SECS=${SECS:-1} H2_N=${H2_N:-50000} CR_SECS=${CR_SECS:-1}
  UDP_RATES=${UDP_RATES:-"50000 150000"} UDP_SECS=${UDP_SECS:-1} WARMUP=${WARMUP:-0}
else
  ROUNDS=${ROUNDS:-5} SECS=${SECS:-5} H2_N=${H2_N:-400000} CR_SECS=${CR_SECS:-4}
  UDP_RATES=${UDP_RATES:-"50000 100000 150000 200000 250000"} UDP_SECS=${UDP_SECS:-4}
  WARMUP=${WARMUP:-1}
fi
PEERS_OUT=${PEERS_OUT:-/tmp/reactor-peers} DOC=${DOC:-$root/docs/PERFORMANCE.md}
REACTOR_SRC=${REACTOR_SRC:-$root}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || die "ROUNDS must be 1..99"
[[ $CR_SECS =~ ^[1-9][0-9]*$ && $UDP_SECS =~ ^[1-9][0-9]*$ ]] || die "CR_SECS, UDP_SECS: whole seconds"
(($(nproc) >= 2)) || die "needs 2 cores (server on 0, load on 1)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-vs-peers.XXXXXX")
# shellcheck disable=SC2016  # evaluated by the trap
install_cleanup 'rm -rf "$tmp"'
set_nofile 20000
t_all=$SECONDS

# Tools and peers. build.sh installs wrk, h2load (nghttp2-client) and
# nginx-light when absent; nginx's stream module is a package of its own.
step_header "peers and tools"
"$root/../shared/peers/build.sh" "$PEERS_OUT" >&2
stream_so=/usr/lib/nginx/modules/ngx_stream_module.so
if [[ ! -f $stream_so ]]; then
  log "installing libnginx-mod-stream (nginx stream return, the greet peer)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnginx-mod-stream >/dev/null ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnginx-mod-stream >/dev/null; }
  service nginx stop >/dev/null 2>&1 || true
fi
[[ -f $stream_so ]] || die "missing $stream_so"
reactor=$(reactor_bin)
[[ -x $reactor ]] || die "missing $reactor"
# The accept-and-close client: C cycles in flight, each connect, FIN, read
# to EOF, close; source addresses spread over 127.0.0.1-16 (the client
# closes first and holds TIME_WAIT: one address's ports would run out).
cat >"$tmp/connect_close.c" <<'EOF'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static int ep; static struct sockaddr_in dst; static long errs, nconn;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int start(int slot) {
    for (int tries = 0; tries < 1000; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
        if (fd < 0) { errs++; continue; }
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001 + nconn++ % 16)};
        if (bind(fd, (struct sockaddr *)&src, sizeof src) ||
            (connect(fd, (struct sockaddr *)&dst, sizeof dst) && errno != EINPROGRESS)) {
            errs++; close(fd); continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u64 = (unsigned long)slot << 32 | fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        return fd;
    }
    fprintf(stderr, "cannot connect\n"); exit(1);
}
int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s HOST PORT CONNS SECS\n", argv[0]); return 2; }
    int C = atoi(argv[3]); double T = atof(argv[4]);
    dst.sin_family = AF_INET; dst.sin_port = htons(atoi(argv[2])); inet_pton(AF_INET, argv[1], &dst.sin_addr);
    ep = epoll_create1(0);
    char *shut = calloc(C, 1), buf[4096];
    for (int i = 0; i < C; i++) start(i);
    struct epoll_event evs[1024]; long done = 0, bytes = 0;
    double t0 = now(), end = t0 + T;
    while (now() < end) {
        int n = epoll_wait(ep, evs, 1024, 100);
        for (int k = 0; k < n; k++) {
            int s = evs[k].data.u64 >> 32, fd = (int)evs[k].data.u64;
            if (evs[k].events & EPOLLERR) { errs++; goto recycle; }
            if (!shut[s] && (evs[k].events & EPOLLOUT)) {
                shutdown(fd, SHUT_WR); shut[s] = 1;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = evs[k].data.u64};
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
            }
            if (evs[k].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
                for (;;) {
                    ssize_t r = read(fd, buf, sizeof buf);
                    if (r > 0) { bytes += r; continue; }
                    if (r == 0) { done++; goto recycle; }
                    if (errno == EAGAIN) break;
                    errs++; goto recycle;
                }
            }
            continue;
        recycle:
            close(fd); shut[s] = 0; start(s);
        }
    }
    printf("%ld cycles in %.3f s, %.0f cycles/s, errors=%ld, greeting_bytes=%ld\n", done, now() - t0, done / (now() - t0), errs, bytes);
    return 0;
}
EOF
cc -O2 -Wall -o "$tmp/connect_close" "$tmp/connect_close.c"
step_done

machine=$(machine_desc)
src=$(source_desc "$REACTOR_SRC")
load0=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A took

# 1 and 2: the existing side-by-side scripts, on the same binary and peers.
for part in echo http; do
  step_header "$part (scripts/bench-$part.sh)"
  t0=$SECONDS
  if ! ROUNDS=$ROUNDS SECS=$SECS H2_N=$H2_N WARMUP=$WARMUP PEERS_OUT=$PEERS_OUT SKIP_BUILD=1 \
    REACTOR_BIN=$reactor REACTOR_SRC=$REACTOR_SRC bash "$here/bench-$part.sh" "$tmp/$part.md" >/dev/null; then
    echo "scripts/bench-$part.sh FAILED (its stderr above)." >"$tmp/$part.md"
  fi
  took[$part]=$((SECONDS - t0))
  step_done
done

# 3 and 4: connection rate and UDP. One reactor (greet, echo, UDP), one
# epoll_echo, one nginx (one worker: HTTP on a free port, and stream
# `return` of the greeting), all on core 0, started once.
step_header "connection rate and UDP"
t0=$SECONDS
mapfile -t ports < <(free_ports 5)
((${#ports[@]} == 5)) || die "could not pick free ports"
p_greet=${ports[0]} p_echo=${ports[1]} p_epoll=${ports[2]} p_nghttp=${ports[3]} p_ngstream=${ports[4]}
p_udp=$p_echo # free for UDP too (free_ports checks)
mkdir -p "$tmp/ng/logs"
{
  echo "load_module $stream_so;"
  sed "s/listen 127.0.0.1:7080 /listen 127.0.0.1:$p_nghttp /" "$root/../shared/peers/nginx.conf"
  echo "stream { server { listen 127.0.0.1:$p_ngstream backlog=4096; return \"Thank you for connecting\"; } }"
} >"$tmp/ng/nginx.conf"
grep -q "listen 127.0.0.1:$p_nghttp " "$tmp/ng/nginx.conf" || die "could not set nginx's port"
spawn "$tmp/reactor.log" taskset -c 0 "$reactor" serve --greet "127.0.0.1:$p_greet" \
  --echo "127.0.0.1:$p_echo" --udp "127.0.0.1:$p_udp" --log-level warn
rpid=$SPAWNED
spawn "$tmp/epoll_echo.log" taskset -c 0 "$PEERS_OUT/epoll_echo" "$p_epoll"
epid=$SPAWNED
spawn "$tmp/nginx.log" taskset -c 0 nginx -p "$tmp/ng" -c "$tmp/ng/nginx.conf"
npid=$SPAWNED # SIGTERM (stop_pid, kill_spawned) is nginx's fast shutdown
for p in "$p_greet:$rpid" "$p_echo:$rpid" "$p_epoll:$epid" "$p_nghttp:$npid" "$p_ngstream:$npid"; do
  wait_tcp "${p%%:*}" "${p#*:}" 10 || { tail "$tmp"/*.log >&2; die "a server did not start"; }
done
# nginx's CPU is its one worker's, a child of the master.
# shellcheck disable=SC2016  # $1 is the inner shell's
nworker=$(timeout 5 bash -c 'until pgrep -P "$1"; do sleep 0.05; done' _ "$npid" | head -1) ||
  die "no nginx worker under master $npid"
hz=$(getconf CLK_TCK)

# The connection-rate runs: name, client, port, pid whose CPU counts.
runs=(
  "reactor-greet|connect|$p_greet|$rpid"
  "nginx-stream|connect|$p_ngstream|$nworker"
  "reactor-greet|cc|$p_greet|$rpid"
  "reactor-echo|cc|$p_echo|$rpid"
  "epoll_echo|cc|$p_epoll|$epid"
  "nginx-http|cc|$p_nghttp|$nworker"
  "nginx-stream|cc|$p_ngstream|$nworker"
)
# cr_run CLIENT PORT PID: one run on core 1; prints "CYCLES SECS TICKS ERRORS".
cr_run() {
  local client=$1 port=$2 pid=$3 c0 c1 out n s e
  c0=$(cpu_ticks "$pid")
  case $client in
    connect)
      taskset -c 1 timeout -k 5 $((CR_SECS + 30)) "$reactor" bench connect "127.0.0.1:$port" \
        -c 50 --source-ips 16 -d "$CR_SECS" -q --json "$tmp/cr.json" >/dev/null 2>&1 || true
      n=$(json_field "$tmp/cr.json" requests) s=$(json_field "$tmp/cr.json" duration_s)
      e=$(json_field "$tmp/cr.json" errors)
      rm -f "$tmp/cr.json"
      ;;
    cc)
      out=$(taskset -c 1 timeout -k 5 $((CR_SECS + 30)) "$tmp/connect_close" 127.0.0.1 "$port" 50 "$CR_SECS") || true
      read -r n s e < <(sed -nE 's/^([0-9]+) cycles in ([0-9.]+) s, .* errors=([0-9]+),.*/\1 \2 \3/p' <<<"$out")
      ;;
  esac
  c1=$(cpu_ticks "$pid")
  if [[ -z ${n:-} || -z ${s:-} ]]; then echo "FAIL"; else echo "$n $s $((c1 - c0)) ${e:-0}"; fi
}
: >"$tmp/cr.tsv"
for ((r = 1; r <= ROUNDS; r++)); do
  for run in "${runs[@]}"; do
    IFS='|' read -r name client port pid <<<"$run"
    res=$(cr_run "$client" "$port" "$pid")
    log "connection rate round $r: $name ($client): $res"
    printf '%s\t%s\t%s\t%s\n' "$client" "$r" "$name" "$res" >>"$tmp/cr.tsv"
  done
done
took[cr]=$((SECONDS - t0))

# UDP: a sweep of offered rates, 4 sockets, 64-byte datagrams.
t0=$SECONDS
: >"$tmp/udp.tsv"
# udp_drops PORT: datagrams the kernel dropped at the socket bound to
# 127.0.0.1:PORT, its receive buffer full (/proc/net/udp, last field).
udp_drops() {
  awk -v a="$(printf '0100007F:%04X' "$1")" '$2 == a {print $NF; exit}' /proc/net/udp
}
for ((r = 1; r <= ROUNDS; r++)); do
  for rate in $UDP_RATES; do
    d0=$(udp_drops "$p_udp")
    c0=$(cpu_ticks "$rpid")
    taskset -c 1 timeout -k 5 $((UDP_SECS + 30)) "$reactor" bench udp "127.0.0.1:$p_udp" -c 4 \
      --rate "$rate" --size 64 -d "$UDP_SECS" -q --json "$tmp/udp.json" >/dev/null 2>&1 || true
    c1=$(cpu_ticks "$rpid")
    d1=$(udp_drops "$p_udp")
    python3 - "$tmp/udp.json" "$rate" "$r" "$((c1 - c0))" "$((d1 - d0))" >>"$tmp/udp.tsv" <<'EOF'
import json, sys
f, rate, rnd, ticks, drops = sys.argv[1:]
try:
    j = json.load(open(f))
except (OSError, ValueError):
    print(f"{rate}\t{rnd}\tFAIL"); sys.exit()
w = j["workload_counters"]
print("\t".join(map(str, [rate, rnd, j["requests_per_sec"], w["sent"], w["lost"], ticks, j["duration_s"],
                          j["latency_us"]["p50"], j["latency_us"]["p99"], int(j["valid"]), drops])))
EOF
    rm -f "$tmp/udp.json"
    log "udp round $r rate $rate: $(tail -1 "$tmp/udp.tsv")"
  done
done
took[udp]=$((SECONDS - t0))
for p in "$rpid" "$epid" "$npid"; do stop_pid "$p"; done
grep -E '^[^ ]+ +ERROR|panick' "$tmp/reactor.log" >&2 && log "the reactor logged errors (above)"
step_done

# Tables for 3 and 4.
python3 - "$tmp/cr.tsv" "$tmp/udp.tsv" "$hz" "$CR_SECS" "$UDP_SECS" "$ROUNDS" >"$tmp/cr.md" <<'EOF'
import statistics as st, sys
cr, udp, hz, cr_secs, udp_secs, rounds = sys.argv[1:]
hz = int(hz)
runs = {}   # (client, name) -> round -> (cycles/s, cycles per CPU-s, errors)
for line in open(cr):
    client, r, name, *res = line.rstrip("\n").split("\t")
    v = None
    if res and res[0] != "FAIL":
        n, s, ticks, e = res[0].split()
        n, s, cpu = int(n), float(s), int(ticks) / hz
        v = (n / s, n / cpu if cpu > 0 else None, int(e))
    runs.setdefault((client, name), {})[int(r)] = v

def med(xs):
    xs = [x for x in xs if x is not None]
    return (st.median(xs), min(xs), max(xs)) if xs else None
def k(m): return "n/a" if m is None else f"{m[0] / 1e3:,.1f}k ({m[1] / 1e3:,.1f}-{m[2] / 1e3:,.1f}k)"
def x(m): return "n/a" if m is None else f"**{m[0]:.2f}x** ({m[1]:.2f}-{m[2]:.2f}x)"
clients = {
    "connect": "`reactor bench connect -c 50` (connect, read the greeting to EOF, close)",
    "cc": "accept-and-close client, 50 in flight (connect, FIN, read to EOF, close)",
}
print("### Connection rate\n")
print(f"{rounds} rounds x {cr_secs} s per server and client, alternating; the client on core 1 "
      "runs at 100% of its core in every run, so connections per second is the client's "
      "ceiling as much as the server's: connections per server CPU-second is the comparison "
      "that holds. nginx: one worker; `nginx-stream` is its stream module's `return` of "
      "the same greeting, `nginx-http` its HTTP server closing a connection that sent "
      "no request. Median (min-max over rounds).\n")
print("| client | server | conns/s | conns per server CPU-s | errors |")
print("|---|---|---|---|---|")
for (client, name), by in runs.items():
    vals = list(by.values())
    print(f"| {client} | {name} | {k(med([v and v[0] for v in vals]))} | "
          f"{k(med([v and v[1] for v in vals]))} | "
          f"{sum(v[2] for v in vals if v) if all(vals) else 'FAIL'} |")
pairs = [("connect", "reactor-greet", "nginx-stream"), ("cc", "reactor-greet", "epoll_echo"),
         ("cc", "reactor-greet", "nginx-http"), ("cc", "reactor-greet", "nginx-stream"),
         ("cc", "reactor-echo", "epoll_echo"), ("cc", "reactor-echo", "nginx-http")]
print("\nMedian of the per-round ratios (min-max):\n")
print("| client | ratio | conns/s | conns per server CPU-s |")
print("|---|---|---|---|")
for client, a, b in pairs:
    A, B = runs.get((client, a), {}), runs.get((client, b), {})
    rs = [(A[r][0] / B[r][0], A[r][1] / B[r][1] if A[r][1] and B[r][1] else None)
          for r in A if A.get(r) and B.get(r)]
    print(f"| {client} | {a} / {b} | {x(med([q[0] for q in rs]))} | {x(med([q[1] for q in rs]))} |")

print("\n### UDP echo\n")
print(f"`reactor bench udp -c 4 --size 64 --rate R -d {udp_secs}` (open loop, 4 sockets, "
      f"one thread) against `reactor serve --udp` on core 0, {rounds} rounds over the rates. "
      "Lost: datagrams sent with no echo within 2 s; of them, those dropped at the server's "
      "socket (its receive buffer full: the `drops` of its socket in /proc/net/udp), the rest "
      "at the generator's sockets. The server echoes every datagram it reads, so what it "
      "echoed is what was sent less its drops: the server's datagrams per CPU-second count "
      "those. There is no UDP peer in ../shared/peers to compare with. "
      "Median (min-max over rounds).\n")
print("| offered/s | echoed by the server/s | received back/s | lost | of it at the server | server CPU (share of a core) | server datagrams per CPU-s | p50 | p99 | runs valid |")
print("|---|---|---|---|---|---|---|---|---|---|")
rows = {}
for line in open(udp):
    f = line.rstrip("\n").split("\t")
    rows.setdefault(int(f[0]), []).append(None if f[2] == "FAIL" else
        (float(f[2]), int(f[3]), int(f[4]), int(f[5]) / hz, float(f[6]), float(f[7]), float(f[8]), int(f[9]),
         int(f[10])))
def pct(m): return f"{m[0]:.3f}% ({m[1]:.3f}-{m[2]:.3f}%)"
def us(m): return f"{m[0] / 1e3:.2f} ms" if m[0] >= 1000 else f"{m[0]:.0f} us"
for rate in sorted(rows):
    v = [q for q in rows[rate] if q]
    if not v:
        print(f"| {rate:,} | FAIL | | | | | | | | |"); continue
    echo = med([q[0] for q in v]); lost = med([100 * q[2] / q[1] for q in v if q[1]])
    srv = med([(q[1] - q[8]) / q[4] for q in v]); at_srv = med([100 * q[8] / q[1] for q in v if q[1]])
    cpu = med([q[3] / q[4] for q in v]); per = med([(q[1] - q[8]) / q[3] for q in v if q[3]])
    print(f"| {rate:,} | {k(srv)} | {k(echo)} | {pct(lost) if lost else 'n/a'} | "
          f"{pct(at_srv) if at_srv else 'n/a'} | {cpu[0]:.0%} ({cpu[1]:.0%}-{cpu[2]:.0%}) | "
          f"{k(per)} | {us(med([q[5] for q in v]))} | {us(med([q[6] for q in v]))} | "
          f"{sum(q[7] for q in v)}/{len(rows[rate])} |")
EOF

# The whole block: machine, then every table (headings one level down).
{
  echo "## Side by side, all in one run: \`scripts/bench-vs-peers.sh$( ((quick)) && echo ' --quick')\`"
  echo
  echo "Generated; a rerun replaces this section. Machine: $machine; reactor at commit $src."
  echo "Load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end: the"
  echo "machine has 2 cores, shared with other work (builds), so absolute figures drift;"
  echo "the per-round figures below show the spread. Took $(((SECONDS - t_all) / 60)) min $(((SECONDS - t_all) % 60)) s"
  echo "(echo ${took[echo]} s, HTTP ${took[http]} s, connection rate ${took[cr]} s, UDP ${took[udp]} s)."
  echo
  for part in echo http; do
    sed -E 's/^(#+) /\1## /' "$tmp/$part.md"
    echo
  done
  cat "$tmp/cr.md"
} >"$tmp/block.md"
cat "$tmp/block.md"
if ((write_doc)); then
  doc_block "$DOC" bench-vs-peers "$tmp/block.md"
  log "written to $DOC (between <!-- bench-vs-peers:begin/end -->)"
fi
printf '%s\n' "${STEP_TIMES[@]}" >&2
