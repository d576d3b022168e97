#!/usr/bin/env bash
# Does `reactor bench` speak to nginx as it should? Functional checks (not
# timings) against nginx (one worker, plain HTTP and TLS 1.2/1.3 with a
# certificate from `reactor cert`), each a short run whose JSON must show
# what the feature promises; any other outcome fails the script:
#   https keep-alive    every request 200, one handshake per connection,
#                       no error (--cacert trusts the certificate)
#   https --close       a handshake per request, resumed after the first
#   --no-resume         every handshake full
#   connect --tls       handshakes per second: full with --no-resume,
#                       resumed without
#   POST --body-file    a 64 KiB body per request, all 200 (nginx reads
#                       and discards it)
#   HEAD                answers with Content-Length and no body
#   --requests          a list of GET, POST with a body, HEAD, taken in turn
#   no --cacert         the system's roots refuse the certificate: tls errors
#
#   scripts/bench-nginx-check.sh
#
# Environment: REACTOR_BIN (check this binary; else `cargo build --release`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/perf-lib.sh
. "$here/perf-lib.sh" # and lib.sh
root=$(repo_root)
cd "$root"

command -v nginx >/dev/null || die "missing nginx (apt-get install nginx-light)"
nginx -V 2>&1 | grep -q -- --with-http_ssl_module || die "nginx has no ssl module"
reactor=$(reactor_bin)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-nginx-check.XXXXXX")
# shellcheck disable=SC2016  # evaluated by the trap
install_cleanup 'rm -rf "$tmp"'

mapfile -t ports < <(free_ports 2)
((${#ports[@]} == 2)) || die "could not pick free ports"
p_http=${ports[0]} p_tls=${ports[1]}
"$reactor" cert --out "$tmp/tls" >&2
mkdir -p "$tmp/ng/logs"
cat >"$tmp/ng/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log stderr error;
pid nginx.pid;
events { worker_connections 4096; use epoll; }
http {
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$p_http;
        listen 127.0.0.1:$p_tls ssl;
        ssl_certificate $tmp/tls/cert.pem;
        ssl_certificate_key $tmp/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 1m;
        location / { default_type text/plain; return 200 "Hello, client!"; }
    }
}
NGINX
spawn "$tmp/nginx.log" nginx -p "$tmp/ng" -c "$tmp/ng/nginx.conf"
nginx_pid=$SPAWNED
wait_tcp "$p_http" "$nginx_pid" 5 || die "nginx does not accept"
wait_tcp "$p_tls" "$nginx_pid" 5 || die "nginx (TLS) does not accept"

head -c 65536 /dev/urandom >"$tmp/body.bin"
printf 'GET /a\nPOST /b Content-Type:application/octet-stream @body.bin\nHEAD /c\n' >"$tmp/list.txt"
https=https://localhost:$p_tls/ http=http://127.0.0.1:$p_http/
failed=0

# check NAME CONDITION -- BENCH ARGS...: runs `reactor bench ARGS --json`,
# then the Python CONDITION on the result `v` (a dict); reports either way.
check() {
  local name=$1 cond=$2 out=$tmp/$RANDOM.json
  shift 3
  if ! "$reactor" bench "$@" -q --json "$out" >"$out.txt" 2>&1; then
    log "FAIL $name: the run failed"; cat "$out.txt" >&2; failed=1; return
  fi
  if python3 - "$out" "$cond" <<'EOF'; then
import json, sys
v = json.load(open(sys.argv[1]))
w = v["workload_counters"]
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
    log "ok   $name"
  else
    log "FAIL $name: not $cond"; cat "$out.txt" >&2; failed=1
  fi
}

check "https keep-alive" \
  'v["requests"] == 2000 and v["errors"] == 0 and v["status_codes"] == {"200": 2000} and v["handshake_us"]["count"] == 10' \
  -- http "$https" --cacert "$tmp/tls/cert.pem" -c 10 -n 2000
check "https --close, resumed" \
  'v["requests"] == 200 and v["errors"] == 0 and w.get("handshakes_resumed", 0) > 0 and w.get("handshakes_full", 0) + w["handshakes_resumed"] == 200' \
  -- http "$https" --cacert "$tmp/tls/cert.pem" --close -c 4 -n 200
check "https --close --no-resume" \
  'v["requests"] == 200 and v["errors"] == 0 and w.get("handshakes_full") == 200 and "handshakes_resumed" not in w' \
  -- http "$https" --cacert "$tmp/tls/cert.pem" --close --no-resume -c 4 -n 200
check "connect --tls, resumed" \
  'v["requests"] == 300 and v["errors"] == 0 and w.get("handshakes_resumed", 0) > 0' \
  -- connect "127.0.0.1:$p_tls" --tls -k -c 4 -n 300
check "connect --tls --no-resume" \
  'v["requests"] == 300 and v["errors"] == 0 and w.get("handshakes_full") == 300' \
  -- connect "127.0.0.1:$p_tls" --tls -k --no-resume -c 4 -n 300
check "POST --body-file 64 KiB, pipelined" \
  'v["requests"] == 500 and v["errors"] == 0 and v["bytes"]["sent"] >= 500 * 65536' \
  -- http "$http" -m POST --body-file "$tmp/body.bin" -c 4 --depth 2 -n 500
check "POST over TLS" \
  'v["requests"] == 200 and v["errors"] == 0' \
  -- http "$https" --cacert "$tmp/tls/cert.pem" -m POST --body-file "$tmp/body.bin" -c 4 -n 200
check "HEAD" \
  'v["requests"] == 500 and v["errors"] == 0 and v["status_codes"] == {"200": 500}' \
  -- http "$http" -m HEAD -c 2 --depth 4 -n 500
check "--requests list" \
  'v["requests"] == 600 and v["errors"] == 0' \
  -- http "$http" --requests "$tmp/list.txt" -c 3 --depth 2 -n 600
check "no --cacert: the certificate refused" \
  'v["requests"] == 0 and v["errors_by_kind"]["tls"] > 0' \
  -- http "$https" -c 1 -d 0.3 --timeout 1s
((failed == 0)) || die "some checks failed"
log "all checks passed against nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')"
