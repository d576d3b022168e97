#!/usr/bin/env bash
# HTTPS against nginx (one worker, the same certificate), on one machine:
#   keep-alive   `wrk -t1 -c100 -dSECS https://.../`      requests/s
#   handshakes   the same with `-H 'Connection: close'`    a new TLS
#                connection (full handshake) per request
#   idle memory  scripts/idle-tls.py: IDLE_N TLS keep-alive connections after
#                one request each, server RSS growth per connection
# Server on core 0, load on core 1 (`taskset`), rounds alternate the two
# servers; server CPU (utime+stime, nginx: its worker) from /proc gives
# requests per server CPU-second too. Prints a table; the ratio is the
# median of the per-round ratios reactor/nginx.
#
#   scripts/bench-tls.sh
#
# Environment: ROUNDS [3], SECS [5], IDLE_N [5000] (0: skip), SKIP_BUILD [0].
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root=$(repo_root)
cd "$root"

ROUNDS=${ROUNDS:-3} SECS=${SECS:-5} IDLE_N=${IDLE_N:-5000} SKIP_BUILD=${SKIP_BUILD:-0}
for t in wrk nginx taskset curl python3; do
  command -v "$t" >/dev/null || die "missing $t"
done
nginx -V 2>&1 | grep -q -- --with-http_ssl_module || die "nginx has no ssl module"
(($(nproc) >= 2)) || die "needs 2 cores (server on 0, load on 1)"
[[ $SKIP_BUILD == 1 ]] || cargo build --release --quiet
reactor=$(release_bin)
raise_nofile

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-bench-tls.XXXXXX")
ng=$tmp/nginx
nginx_pid=
stop_nginx() { [[ -z $nginx_pid ]] || nginx -p "$ng" -c "$ng/nginx.conf" -s stop 2>/dev/null || true; }
install_cleanup 'stop_nginx; rm -rf "$tmp"'
"$reactor" cert --out "$tmp/tls" >&2
mapfile -t ports < <(free_ports 2)
declare -A port pid cpu_pid
port[reactor]=${ports[0]} port[nginx]=${ports[1]}

# nginx: one worker, TLS 1.2/1.3 with the same certificate, the same body.
mkdir -p "$ng/logs"
cat >"$ng/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log stderr error;
pid nginx.pid;
events { worker_connections 65536; use epoll; }
http {
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:${port[nginx]} ssl reuseport backlog=4096;
        ssl_certificate $tmp/tls/cert.pem;
        ssl_certificate_key $tmp/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { default_type text/plain; return 200 "Hello, client!"; }
    }
}
NGINX

start_servers() {
  spawn "$tmp/reactor.log" taskset -c 0 "$reactor" serve --https "127.0.0.1:${port[reactor]}" \
    --tls-cert "$tmp/tls/cert.pem" --tls-key "$tmp/tls/key.pem" --max-conns 20000 --log-level warn
  pid[reactor]=$SPAWNED cpu_pid[reactor]=$SPAWNED
  spawn "$tmp/nginx.log" taskset -c 0 nginx -p "$ng" -c "$ng/nginx.conf"
  pid[nginx]=$SPAWNED nginx_pid=$SPAWNED
  for s in reactor nginx; do
    wait_tcp "${port[$s]}" "${pid[$s]}" 10 || { cat "$tmp/$s.log" >&2; die "$s did not start"; }
  done
  local w=
  for ((i = 0; i < 100; i++)); do
    w=$(pgrep -P "${pid[nginx]}" | head -1) || true
    [[ -n $w ]] && break
    sleep 0.05
  done
  [[ -n $w ]] || die "no nginx worker"
  cpu_pid[nginx]=$w
  for s in reactor nginx; do
    body=$(curl -s --max-time 5 --cacert "$tmp/tls/cert.pem" "https://127.0.0.1:${port[$s]}/") || true
    [[ $body == "Hello, client!" ]] || die "$s: GET / gave '${body:0:60}'"
  done
}
stop_servers() {
  stop_nginx; nginx_pid=
  stop_pid "${pid[reactor]}" TERM 8
  wait "${pid[nginx]}" 2>/dev/null || true
}

# run_wrk SERVER MODE: prints "RPS TICKS" (or FAIL).
run_wrk() {
  local s=$1 mode=$2 t0 t1 out rc=0 extra=()
  [[ $mode == close ]] && extra=(-H 'Connection: close')
  t0=$(cpu_ticks "${cpu_pid[$s]}")
  out=$(taskset -c 1 timeout -k 5 $((SECS + 30)) wrk -t1 -c100 "-d${SECS}s" "${extra[@]}" \
    "https://127.0.0.1:${port[$s]}/" 2>&1) || rc=$?
  t1=$(cpu_ticks "${cpu_pid[$s]}")
  local rps; rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  if ((rc != 0)) || [[ -z $rps ]] || grep -q 'Non-2xx' <<<"$out"; then
    log "$s $mode: rc=$rc $out"; echo FAIL; return
  fi
  grep -q 'Socket errors' <<<"$out" && log "$s $mode: $(grep 'Socket errors' <<<"$out")"
  echo "$rps $((t1 - t0))"
}

start_servers
hz=$(getconf CLK_TCK)
declare -A ratios
echo "| load | round | reactor req/s | nginx req/s | reactor req/CPU-s | nginx req/CPU-s | ratio |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for mode in keepalive close; do
  ratios[$mode]=
  for ((r = 1; r <= ROUNDS; r++)); do
    read -r a_rps a_t < <(run_wrk reactor "$mode")
    read -r b_rps b_t < <(run_wrk nginx "$mode")
    [[ $a_rps != FAIL && $b_rps != FAIL ]] || { log "round $r $mode failed"; continue; }
    ratio=$(python3 -c "print(f'{$a_rps/$b_rps:.2f}')")
    cpu() { python3 -c "print(f'{$1/max($2,1)*$hz:.0f}')"; }
    echo "| $mode | $r | $a_rps | $b_rps | $(cpu "$a_rps*$SECS" "$a_t") | $(cpu "$b_rps*$SECS" "$b_t") | $ratio |"
    ratios[$mode]+="$ratio "
  done
done
for mode in keepalive close; do
  med=$(python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'{statistics.median(v):.2f}' if v else 'n/a')" ${ratios[$mode]})
  echo "median ratio reactor/nginx, $mode: $med"
done

if ((IDLE_N > 0)); then
  # Fresh servers, so the load's memory does not hide growth.
  stop_servers; start_servers
  for s in reactor nginx; do
    res=$(python3 "$here/idle-tls.py" "${cpu_pid[$s]}" "${port[$s]}" "$tmp/tls/cert.pem" "$IDLE_N")
    echo "idle TLS memory, $s: $res"
  done
fi
stop_servers
