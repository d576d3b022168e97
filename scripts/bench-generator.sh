#!/usr/bin/env bash
# Is `reactor bench` as strong a load generator as the independent tools?
# Side by side against the same server, one thread each, the server on
# core 0 and the generator on core 1, written into docs/PERFORMANCE.md
# (between `<!-- bench-generator:begin/end -->`; a rerun replaces it).
#
#   scripts/bench-generator.sh [--quick] [--no-doc]
#
# Six comparisons, each ROUNDS pairs of runs:
#   echo1       `reactor bench echo` vs `epoll_load`, against epoll_echo
#   echo16      the same, 16 messages in flight per connection
#   nginx       HTTP keep-alive: `reactor bench http` vs `wrk -t1`, against
#               nginx (one worker, ../shared/peers/nginx.conf on a free port)
#   epoll_http  the same against epoll_http (a cheaper server, so the
#               generator is more often the one that sets the pace)
#   redis1      `reactor bench tcp --send 'PING\r\n' --expect '+PONG\r\n'`
#               vs `redis-benchmark -t ping_inline` (one thread), against
#               redis-server
#   redis16     the same, 16 in flight (redis-benchmark -P 16)
#   nginx_tls   HTTPS keep-alive: `reactor bench http https://` vs `wrk -t1`,
#               against nginx serving TLS 1.2/1.3 with a certificate from
#               `reactor cert` (reactor bench trusts it with --cacert)
#   post        HTTP keep-alive POST of a 4 KiB body (a file):
#               `reactor bench http -m POST --body-file` vs `h2load --h1 -d`,
#               against nginx
# 100 connections, 64-byte echo messages. The pairs go A B, B A, A B, ... (so
# neither tool always runs first, on a server just warmed by the other),
# after one discarded warm-up run of each. Every run records, besides the
# tool's own rate, its wall time, the CPU time of the generator (its
# children's times, from the shell's `times`) and of the server
# (/proc/PID/stat); requests are rate x wall time; the table
# gives the median of the per-pair ratios (reactor bench / other tool) of
# throughput, of requests per generator CPU-second and of requests per
# server CPU-second, with the throughput ratios' range and how many pairs
# reactor bench won. A run with an error (a wrong byte, a bad status, a
# socket error) fails the script.
#
# --quick: 2 pairs of 1 s (a smoke test, under a minute); --no-doc: print
# the tables, leave docs/PERFORMANCE.md alone. Environment: ROUNDS [10],
# SECS [4], ONLY (some of the names above; default all,
# and only a run of all is written into the doc), PEERS_OUT
# [/tmp/reactor-peers], REACTOR_BIN (measure this binary; else `cargo
# build --release` here), REACTOR_SRC (the checkout it was built from, for
# the commit named in the doc), DOC.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/perf-lib.sh
. "$here/perf-lib.sh" # and lib.sh
root=$(repo_root)
cd "$root"

doc_flags "$@"
if ((quick)); then
  ROUNDS=${ROUNDS:-2} SECS=${SECS:-1}
else
  ROUNDS=${ROUNDS:-10} SECS=${SECS:-4}
fi
PEERS_OUT=${PEERS_OUT:-/tmp/reactor-peers} DOC=${DOC:-$root/docs/PERFORMANCE.md}
ALL="echo1 echo16 nginx epoll_http redis1 redis16 nginx_tls post" ONLY=${ONLY:-$ALL}
for c in $ONLY; do [[ " $ALL " == *" $c "* ]] || die "ONLY: unknown comparison $c (of: $ALL)"; done
# wanted NAME: the comparison NAME is to run.
wanted() { [[ " $ONLY " == *" $1 "* ]]; }
REACTOR_SRC=${REACTOR_SRC:-$root}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || die "ROUNDS must be 1..99"
[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "SECS: whole seconds"
(($(nproc) >= 2)) || die "needs 2 cores (server on 0, load on 1)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-gen.XXXXXX")
# shellcheck disable=SC2016  # evaluated by the trap
install_cleanup 'rm -rf "$tmp"'
set_nofile 20000
t_all=$SECONDS

step_header "peers and tools"
"$root/../shared/peers/build.sh" "$PEERS_OUT" >&2
reactor=$(reactor_bin)
[[ -x $reactor ]] || die "missing $reactor"
for t in wrk h2load nginx redis-server redis-benchmark taskset; do command -v "$t" >/dev/null || die "missing $t"; done
nginx -V 2>&1 | grep -q -- --with-http_ssl_module || die "nginx has no ssl module"
step_done

mapfile -t ports < <(free_ports 5)
((${#ports[@]} == 5)) || die "could not pick free ports"
p_echo=${ports[0]} p_http=${ports[1]} p_nginx=${ports[2]} p_redis=${ports[3]} p_tls=${ports[4]}
mkdir -p "$tmp/ng/logs"
sed "s/listen 127.0.0.1:7080 /listen 127.0.0.1:$p_nginx /" "$root/../shared/peers/nginx.conf" >"$tmp/ng/nginx.conf"
grep -q "listen 127.0.0.1:$p_nginx " "$tmp/ng/nginx.conf" || die "could not set nginx's port"
# The same nginx answer over TLS (one worker of its own, on core 0 too),
# its certificate from `reactor cert`; and the POST body, 4 KiB.
"$reactor" cert --out "$tmp/tls" >&2
sed -e "s|listen 127.0.0.1:7080 |listen 127.0.0.1:$p_tls ssl |" \
  -e "s|^\( *\)location /|\1ssl_certificate $tmp/tls/cert.pem; ssl_certificate_key $tmp/tls/key.pem; ssl_protocols TLSv1.2 TLSv1.3;\n\1location /|" \
  "$root/../shared/peers/nginx.conf" >"$tmp/ng/nginx-tls.conf"
grep -q "listen 127.0.0.1:$p_tls ssl " "$tmp/ng/nginx-tls.conf" || die "could not set nginx's TLS port"
mkdir -p "$tmp/ngt/logs"
head -c 4096 /dev/urandom >"$tmp/body.bin"
spawn "$tmp/epoll_echo.log" taskset -c 0 "$PEERS_OUT/epoll_echo" "$p_echo"
echo_pid=$SPAWNED
spawn "$tmp/epoll_http.log" taskset -c 0 "$PEERS_OUT/epoll_http" "$p_http"
http_pid=$SPAWNED
spawn "$tmp/nginx.log" taskset -c 0 nginx -p "$tmp/ng" -c "$tmp/ng/nginx.conf"
nginx_master=$SPAWNED
spawn "$tmp/nginx-tls.log" taskset -c 0 nginx -p "$tmp/ngt" -c "$tmp/ng/nginx-tls.conf"
nginx_tls_master=$SPAWNED
spawn "$tmp/redis.log" taskset -c 0 redis-server --port "$p_redis" --bind 127.0.0.1 \
  --save '' --appendonly no --dir "$tmp"
redis_pid=$SPAWNED
wait_tcp "$p_echo" "$echo_pid" 5 || die "epoll_echo does not accept"
wait_tcp "$p_http" "$http_pid" 5 || die "epoll_http does not accept"
wait_tcp "$p_nginx" "$nginx_master" 5 || die "nginx does not accept"
wait_tcp "$p_tls" "$nginx_tls_master" 5 || die "nginx (TLS) does not accept"
wait_tcp "$p_redis" "$redis_pid" 5 || die "redis-server does not accept"
# The worker answers (one worker: the master's only child).
nginx_pid=$(pgrep -P "$nginx_master" | head -1)
[[ -n $nginx_pid ]] || die "no nginx worker"
nginx_tls_pid=$(pgrep -P "$nginx_tls_master" | head -1)
[[ -n $nginx_tls_pid ]] || die "no nginx (TLS) worker"

machine=$(machine_desc)
src=$(source_desc "$REACTOR_SRC")
load0=$(cut -d' ' -f1-3 /proc/loadavg)

# secs_of 0m1.230s: seconds as a decimal.
secs_of() { awk -v t="$1" 'BEGIN { split(t, a, "m"); sub("s", "", a[2]); printf "%.3f", a[1] * 60 + a[2] }'; }

# run_one NAME SERVER_PID SECS: runs generator NAME (see set_cmd) on core 1
# against the server of the current comparison; prints "rate gen_cpu_s
# srv_cpu_s wall_s spin" (spin: the share of the run reactor bench says it
# spent spinning idle; 0 for the others). Fails on any error the tool
# reports.
run_one() {
  local name=$1 srv=$2 secs=$3 runlog=$tmp/run.out s0 s1 rate t t0 t1 spin=0
  s0=$(cpu_ticks "$srv")
  t0=$(date +%s.%N)
  # `times` in the subshell: its second line is the children's user and
  # system time, i.e. the generator's whole CPU time, every thread.
  local -a cmd=("${CMD[@]/@SECS@/$secs}")
  cmd=("${cmd[@]/@COUNT@/$((secs * COUNT_PER_SEC))}")
  if ! (taskset -c 1 "${cmd[@]}" >"$runlog" 2>&1 && times >"$runlog.times"); then
    log "$name failed:"; cat "$runlog" >&2; return 1
  fi
  t1=$(date +%s.%N)
  s1=$(cpu_ticks "$srv")
  case $name in
    reactor)
      rate=$(awk '/^Requests\/sec:/ {print $2}' "$runlog")
      grep -q '^Errors: 0$' "$runlog" || { log "reactor bench reported errors:"; cat "$runlog" >&2; return 1; }
      if grep -q '^INVALID' "$runlog"; then echo "$name" >>"$tmp/invalid"; fi
      spin=$(awk -F'spinning idle \\(not counted as busy\\) ' '/^Generator:/ && NF > 1 {print $2 / 100}' "$runlog")
      spin=${spin:-0}
      ;;
    epoll_load)
      rate=$(awk '/msgs\/s/ {print $1}' "$runlog" | tail -1)
      grep -q 'corrupt_bytes=0' "$runlog" || { log "epoll_load saw corrupt bytes:"; cat "$runlog" >&2; return 1; }
      ;;
    wrk)
      rate=$(awk '/^Requests\/sec:/ {print $2}' "$runlog")
      if grep -qE 'Socket errors|Non-2xx' "$runlog"; then log "wrk reported errors:"; cat "$runlog" >&2; return 1; fi
      ;;
    h2load)
      rate=$(awk '/^finished in/ {print $4}' "$runlog")
      grep -qE '^requests: .* 0 failed, 0 errored, 0 timeout' "$runlog" || { log "h2load reported failures:"; cat "$runlog" >&2; return 1; }
      grep -qE '^status codes: [0-9]+ 2xx, 0 3xx, 0 4xx, 0 5xx' "$runlog" || { log "h2load saw statuses other than 2xx:"; cat "$runlog" >&2; return 1; }
      ;;
    redis-benchmark)
      # -q prints a progress line per second, \r-separated, then the result.
      rate=$(tr '\r' '\n' <"$runlog" | awk '/requests per second/ {print $2}' | tail -1)
      ;;
  esac
  [[ -n $rate ]] || { log "$name printed no rate:"; cat "$runlog" >&2; return 1; }
  t=$(sed -n 2p "$runlog.times") # line 1 is the subshell's own
  # shellcheck disable=SC2086  # two words: user and system
  set -- $t
  awk -v r="$rate" -v u="$(secs_of "$1")" -v s="$(secs_of "$2")" -v k=$((s1 - s0)) \
    -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" -v p="$spin" \
    'BEGIN { printf "%.0f %.3f %.2f %.3f %.3f\n", r, u + s, k / 100, w, p }'
}

# compare TITLE SERVER_PID OTHER: ROUNDS pairs of reactor bench (REACTOR
# command) and OTHER (OTHER command); appends the rounds and a summary.
compare() {
  local title=$1 srv=$2 other=$3 i first second a b ra rb t g v w
  local r_rate r_gen r_srv r_wall r_spin o_rate o_gen o_srv o_wall
  local -a thr=() gen=() work=() srvr=()
  step_header "$title"
  for name in reactor "$other"; do # warm-up, discarded
    set_cmd "$name"
    run_one "$name" "$srv" 1 >/dev/null
  done
  {
    echo
    echo "**$title**"
    echo
    echo "| pair | first | reactor bench req/s | $other req/s | ratio | reactor bench gen CPU (of it spinning idle) | $other gen CPU | server CPU (reactor bench / $other) |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  } >>"$tmp/rounds.md"
  : >"$tmp/invalid"
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then first=reactor second=$other; else first=$other second=reactor; fi
    set_cmd "$first"
    a=$(run_one "$first" "$srv" "$SECS")
    set_cmd "$second"
    b=$(run_one "$second" "$srv" "$SECS")
    if [[ $first == reactor ]]; then ra=$a rb=$b; else ra=$b rb=$a; fi
    # Each run: "rate gen_cpu srv_cpu wall spin"; requests = rate x wall.
    read -r r_rate r_gen r_srv r_wall r_spin <<<"$ra"
    read -r o_rate o_gen o_srv o_wall _ <<<"$rb"
    read -r t g w v < <(awk -v a="$r_rate" -v ag="$r_gen" -v as="$r_srv" -v aw="$r_wall" -v ap="$r_spin" \
      -v b="$o_rate" -v bg="$o_gen" -v bs="$o_srv" -v bw="$o_wall" 'BEGIN {
        work = ag - ap * aw; if (work <= 0) work = ag
        printf "%.4f %.4f %.4f %.4f\n", a / b, (a * aw / ag) / (b * bw / bg),
          (a * aw / work) / (b * bw / bg), (a * aw / as) / (b * bw / bs) }')
    thr+=("$t") gen+=("$g") work+=("$w") srvr+=("$v")
    awk -v i="$i" -v f="$first" -v a="$r_rate" -v b="$o_rate" -v t="$t" -v ag="$r_gen" -v aw="$r_wall" \
      -v ap="$r_spin" -v bg="$o_gen" -v bw="$o_wall" -v as="$r_srv" -v bs="$o_srv" 'BEGIN {
        printf "| %d | %s | %.0f | %.0f | %.2f | %.0f%% (%.0f%%) | %.0f%% | %.0f%% / %.0f%% |\n",
          i, f, a, b, t, 100 * ag / aw, 100 * ap, 100 * bg / bw, 100 * as / aw, 100 * bs / bw }' >>"$tmp/rounds.md"
    log "$title, pair $i: reactor bench $r_rate, $other $o_rate"
  done
  local won lo hi
  won=$(printf '%s\n' "${thr[@]}" | awk '$1 >= 1 {n++} END {print n + 0}')
  lo=$(printf '%s\n' "${thr[@]}" | sort -g | head -1)
  hi=$(printf '%s\n' "${thr[@]}" | sort -g | tail -1)
  printf '| %s | **%.2fx** | %.2f-%.2f | %d of %d | %.2fx (%.2fx) | %.2fx | %d of %d |\n' "$title" \
    "$(median "${thr[@]}")" "$lo" "$hi" "$won" "$ROUNDS" "$(median "${gen[@]}")" "$(median "${work[@]}")" \
    "$(median "${srvr[@]}")" "$(wc -l <"$tmp/invalid")" "$ROUNDS" >>"$tmp/summary.md"
  step_done
}

# set_cmd NAME: the command line of generator NAME for the current
# comparison (globals TARGET, DEPTH, KIND), @SECS@ standing for the
# seconds, @COUNT@ for a request count of about that long (COUNT_PER_SEC
# per second, set here).
set_cmd() {
  COUNT_PER_SEC=0
  case $1:$KIND in
    reactor:echo) CMD=("$reactor" bench echo "127.0.0.1:$TARGET" -c 100 --size 64 --depth "$DEPTH" -d @SECS@ -q) ;;
    epoll_load:echo) CMD=("$PEERS_OUT/epoll_load" 127.0.0.1 "$TARGET" -c 100 -l 64 -d "$DEPTH" -t @SECS@) ;;
    reactor:http) CMD=("$reactor" bench http "http://127.0.0.1:$TARGET/" -c 100 -d @SECS@ -q) ;;
    wrk:http) CMD=(wrk -t1 -c100 -d@SECS@s "http://127.0.0.1:$TARGET/") ;;
    reactor:https) CMD=("$reactor" bench http "https://127.0.0.1:$TARGET/" --cacert "$tmp/tls/cert.pem" -c 100 -d @SECS@ -q) ;;
    wrk:https) CMD=(wrk -t1 -c100 -d@SECS@s "https://127.0.0.1:$TARGET/") ;;
    reactor:post) CMD=("$reactor" bench http "http://127.0.0.1:$TARGET/" -m POST --body-file "$tmp/body.bin"
      -c 100 -d @SECS@ -q) ;;
    h2load:post) CMD=(h2load --h1 -c 100 -t 1 -D @SECS@ -d "$tmp/body.bin" "http://127.0.0.1:$TARGET/") ;;
    reactor:redis) CMD=("$reactor" bench tcp "127.0.0.1:$TARGET" --send 'PING\r\n' --expect '+PONG\r\n'
      -c 100 --depth "$DEPTH" -d @SECS@ -q) ;;
    # redis-benchmark runs a count, not a time: about SECS seconds' worth.
    redis-benchmark:redis) CMD=(redis-benchmark -p "$TARGET" -t ping_inline -c 100 -P "$DEPTH"
      -n @COUNT@ -q)
      COUNT_PER_SEC=$((DEPTH > 1 ? 800000 : 100000)) ;;
    *) die "no command for $1 ($KIND)" ;;
  esac
}

: >"$tmp/rounds.md"
: >"$tmp/summary.md"
if wanted echo1; then
  KIND=echo TARGET=$p_echo DEPTH=1 compare "echo depth 1, vs epoll_load against epoll_echo" "$echo_pid" epoll_load
fi
if wanted echo16; then
  KIND=echo TARGET=$p_echo DEPTH=16 compare "echo depth 16, vs epoll_load against epoll_echo" "$echo_pid" epoll_load
fi
if wanted nginx; then
  KIND=http TARGET=$p_nginx compare "HTTP keep-alive, vs wrk -t1 against nginx" "$nginx_pid" wrk
fi
if wanted epoll_http; then
  KIND=http TARGET=$p_http compare "HTTP keep-alive, vs wrk -t1 against epoll_http" "$http_pid" wrk
fi
if wanted nginx_tls; then
  KIND=https TARGET=$p_tls compare "HTTPS keep-alive, vs wrk -t1 against nginx (TLS)" "$nginx_tls_pid" wrk
fi
if wanted post; then
  KIND=post TARGET=$p_nginx compare "HTTP POST of a 4 KiB body, vs h2load --h1 against nginx" "$nginx_pid" h2load
fi
if wanted redis1; then
  KIND=redis TARGET=$p_redis DEPTH=1 compare "redis PING, vs redis-benchmark -P 1 against redis-server" "$redis_pid" redis-benchmark
fi
if wanted redis16; then
  KIND=redis TARGET=$p_redis DEPTH=16 compare "redis PING, 16 in flight, vs redis-benchmark -P 16 against redis-server" "$redis_pid" redis-benchmark
fi

load1=$(cut -d' ' -f1-3 /proc/loadavg)
took=$((SECONDS - t_all))
{
  echo "## \`reactor bench\` as a load generator: \`scripts/bench-generator.sh\`"
  echo
  echo "Generated; a rerun replaces this section. Machine: $machine; reactor at commit $src. Load average $load0 at the start, $load1 at the end. Took $((took / 60)) min $((took % 60)) s."
  echo "Servers on core 0, generators on core 1, one thread each, 100 connections (echo: 64-byte messages); $ROUNDS pairs of $SECS s per comparison, A B then B A alternately, after one discarded warm-up run of each; every run had 0 errors."
  echo "Ratios are reactor bench / the other tool, medians over the pairs: of throughput, of requests per generator CPU-second (the generator's user+system time, all its threads; in parentheses with the time reactor bench spent spinning idle, up to 50 us before each sleep, left out), and of requests per server CPU-second. \"INVALID\" counts the runs in which reactor bench's verdict on itself was that its own core may have set the pace."
  echo
  echo "| comparison | throughput ratio | pairs' range | pairs reactor bench >= | req per generator CPU-s (spin left out) | req per server CPU-s | reactor bench INVALID |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  cat "$tmp/summary.md"
  echo
  echo "Every pair (gen CPU: the generator's CPU time over the run's wall time; server CPU likewise):"
  cat "$tmp/rounds.md"
} >"$tmp/section.md"

printf '\n'
cat "$tmp/section.md"
if ((write_doc && !quick)) && [[ $ONLY == "$ALL" ]]; then
  doc_block "$DOC" bench-generator "$tmp/section.md"
  log "written into $DOC"
fi
