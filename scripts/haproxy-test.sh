#!/usr/bin/env bash
# The deployment of docs/DEPLOY.md, tested: HAProxy (Debian's package) with
# deploy/haproxy.cfg in front of three `reactor serve` processes sharing
# one redis-server, all on free loopback ports. Two /chat pages in headless
# Chromium and a TCP chat member, all through HAProxy, talk in one room;
# the reactor serving one page is killed with SIGKILL, and the page
# reconnects through HAProxy to another reactor and goes on talking with
# the others. See tests/browser/haproxy-failover.test.mjs. About 20 s.
#
# Installs what is missing: Debian's chromium (apt), playwright-core (npm ci
# in tests/browser); haproxy and redis-server must be there (.ci/run
# installs them). Screenshots and every process's log go to ARTIFACTS.
#
# Environment: BIN (default target/release/reactor, built if missing),
# ARTIFACTS (default target/browser-artifacts/haproxy, emptied first),
# CHROMIUM (/usr/bin/chromium), TIMEOUT (s for the browser part, 120),
# LEASE (the reactors' --bus-lease, 2s: how long the killed reactor keeps
# its members' nicks).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

BIN=${BIN:-$(release_bin)}
ARTIFACTS=${ARTIFACTS:-$root/target/browser-artifacts/haproxy}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
TIMEOUT=${TIMEOUT:-120}
LEASE=${LEASE:-2s}
t0=$(date +%s.%N)

for tool in haproxy redis-server node npm; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install haproxy redis-server nodejs npm)"
done
if [[ ! -x $CHROMIUM ]]; then
  log "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
log "$(haproxy -v | head -1 | cut -d' ' -f1-3), $(redis-server --version | cut -d' ' -f1-3)," \
  "$("$CHROMIUM" --version 2>/dev/null | head -1), node $(node --version)"
(cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
if [[ ! -x $BIN ]]; then
  (cd "$root" && cargo build --release --bin reactor)
fi

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-haproxy.XXXXXX")
# shellcheck disable=SC2016  # expanded when the trap runs
install_cleanup 'rm -rf "$tmp"'

# On failure: the tail of each log (all of them are in ARTIFACTS).
fail() {
  local f
  log "haproxy test: $*"
  for f in "$ARTIFACTS"/*.log; do
    log "--- $(basename "$f") (last 15 lines) ---"
    tail -n 15 "$f" >&2 || true
  done
  exit 1
}

mapfile -t ports < <(free_ports 10)
p_redis=${ports[0]} lb_http=${ports[1]} lb_chat=${ports[2]} lb_stats=${ports[3]}
r_http=("${ports[4]}" "${ports[5]}" "${ports[6]}")
r_chat=("${ports[7]}" "${ports[8]}" "${ports[9]}")
log "ports: redis $p_redis; haproxy http $lb_http, chat $lb_chat, stats $lb_stats;" \
  "reactors http ${r_http[*]}, chat ${r_chat[*]}"

# Redis: no persistence, its files in the temp dir.
spawn "$ARTIFACTS/redis.log" redis-server --port "$p_redis" --bind 127.0.0.1 \
  --save '' --appendonly no --dir "$tmp"
redis_pid=$SPAWNED
wait_tcp "$p_redis" "$redis_pid" 10 || fail "redis-server does not accept"

# Three reactors on the bus, as docs/DEPLOY.md starts them.
r_pid=()
for i in 0 1 2; do
  spawn "$ARTIFACTS/reactor$((i + 1)).log" "$BIN" serve \
    --http "127.0.0.1:${r_http[i]}" --chat "127.0.0.1:${r_chat[i]}" \
    --bus "redis://127.0.0.1:$p_redis" --bus-prefix haproxy-test --bus-lease "$LEASE" \
    --grace 1s --log-level info
  r_pid+=("$SPAWNED")
done
for i in 0 1 2; do
  f=$ARTIFACTS/reactor$((i + 1)).log
  wait_log "$f" ": ready" "${r_pid[i]}" 10 || fail "reactor $((i + 1)) not ready"
  wait_log "$f" "bus: connected to redis" "${r_pid[i]}" 10 || fail "reactor $((i + 1)) not on the bus"
done

# HAProxy with the repository's config, its addresses from the environment.
LB_HTTP=127.0.0.1:$lb_http LB_CHAT=127.0.0.1:$lb_chat LB_STATS=127.0.0.1:$lb_stats \
  REACTOR1_HTTP=127.0.0.1:${r_http[0]} REACTOR1_CHAT=127.0.0.1:${r_chat[0]} \
  REACTOR2_HTTP=127.0.0.1:${r_http[1]} REACTOR2_CHAT=127.0.0.1:${r_chat[1]} \
  REACTOR3_HTTP=127.0.0.1:${r_http[2]} REACTOR3_CHAT=127.0.0.1:${r_chat[2]} \
  spawn "$ARTIFACTS/haproxy.log" haproxy -db -f "$root/deploy/haproxy.cfg"
lb_pid=$SPAWNED
for p in "$lb_http" "$lb_chat" "$lb_stats"; do
  wait_tcp "$p" "$lb_pid" 10 || fail "haproxy does not accept on $p"
done
t_up=$(date +%s.%N)

reactors=$(for i in 0 1 2; do printf '%s:%s:%s,' "${r_pid[i]}" "${r_http[i]}" "${r_chat[i]}"; done)
lease_s=${LEASE%s}
[[ $lease_s =~ ^[0-9]+$ ]] || die "LEASE: whole seconds, e.g. 2s"
# timeout signals its whole process group: node and Chromium.
rc=0
LB_HTTP_PORT=$lb_http LB_CHAT_PORT=$lb_chat LB_STATS_PORT=$lb_stats \
  REACTORS=${reactors%,} BUS_LEASE_MS=$((lease_s * 1000)) \
  ARTIFACTS=$ARTIFACTS CHROMIUM=$CHROMIUM \
  timeout -k 10 "$TIMEOUT" node "$root/tests/browser/haproxy-failover.test.mjs" || rc=$?
((rc == 0)) || fail "browser test failed (status $rc)"

# Exactly one reactor is dead (the test's SIGKILL); the others and HAProxy
# stop cleanly; nothing panicked.
dead=()
for i in 0 1 2; do alive "${r_pid[i]}" || dead+=("reactor$((i + 1))"); done
((${#dead[@]} == 1)) || fail "dead reactors: ${dead[*]:-none}, want one"
grep -q "Server reactors_http/r[123] is DOWN" "$ARTIFACTS/haproxy.log" ||
  fail "haproxy did not log a reactor going down"
for i in 0 1 2; do
  alive "${r_pid[i]}" || continue
  stop_pid "${r_pid[i]}" TERM 8
  [[ $STOP_RC == 0 ]] || fail "reactor $((i + 1)): exit status $STOP_RC after SIGTERM, want 0"
done
stop_pid "$lb_pid" TERM 5
stop_pid "$redis_pid" TERM 5
! grep -l "panicked" "$ARTIFACTS"/reactor*.log || fail "a reactor panicked"
awk -v a="$t0" -v b="$t_up" -v c="$(date +%s.%N)" -v d="$ARTIFACTS" 'BEGIN {
  printf "haproxy test: ok in %.1f s (%.1f s of it before the browser: npm ci, redis, 3 reactors, haproxy); logs and screenshots in %s\n",
    c - a, b - a, d }'
