#!/usr/bin/env bash
# A million chat members on one machine (issue 16): one Redis, SERVERS x
# `reactor serve --chat --http --bus` (each under its open-files limit),
# LOADS x `reactor bench chat|ws` (every LOADS/WS_EVERY-th speaks
# WebSocket), each given its own range of members (--first-member), its
# setup paced (--connect-rate) and its sources spread over 127.0.0.x
# (--source-ips); every load process waits for the others (--ready-file,
# --go-file), and for every room's servers to have subscribed its channel
# on Redis, before time zero; `reactor bench merge` adds their results up.
#   1. one room (the lobby) holding every member: LINES lines from two
#      senders, each owed to every other member (--expect-lines on the
#      processes without a sender): every member heard, none lost, the
#      time until each line's last delivery (p50, p99, max over the lines);
#   2. rooms of ROOM_SIZE, each on SPREAD servers, two senders in each,
#      RATE lines/s in all for SECS: deliveries/s, latency, loss;
#   and, at each part's peak, each server's RSS per member and the
#   machine's memory (/proc/meminfo: kernel apart from user space) against
#   before.
#
#   scripts/million.sh [--quick] [--only 1|2]
#
# --quick: 4 servers, 2,000 members (one load process of 4 on WebSocket),
# rooms of 100 on 2 servers; about 10 s, a CI step (.ci/run). The full run
# (1,000,000 members, 60 servers, 60 load processes) takes several minutes
# and most of the machine. Environment: REACTOR_BIN (else `cargo build
# --release`), OUT (keep the logs and JSON there; else a temporary
# directory, removed), MEMBERS, SERVERS, LOADS, WS_EVERY, LINES,
# LINE_RATE, ROOM_SIZE, SPREAD, RATE, SECS, CONNECT_RATE (per load
# process), SETUP_S (the longest setup waited for), SOURCE_IPS, TIMEOUT
# (each load process's --timeout, s: its setup, and its wait for lines),
# SERVER_ARGS (more `reactor serve` flags for every server).
#
# Kernel settings, as root only, restored on exit: net.ipv4.tcp_mem
# (its ceiling is what all TCP buffers may hold: 2 M sockets each with a
# page in use pass the default), fs.file-max, net.ipv4.tcp_max_syn_backlog
# and net.core.somaxconn (a burst of connects overflows a backlog, and
# each dropped SYN costs a 1 s retransmit). Loopback only; every wait
# bounded; only processes started here are stopped, by pid; the trap stops
# them all on any exit.
set -euo pipefail

# shellcheck source=scripts/perf-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/perf-lib.sh" # and lib.sh
root=$(repo_root)
cd "$root"

quick=0 only="1 2"
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --only) only=${2:?--only 1 or 2}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
if ((quick)); then
  : "${MEMBERS:=2000}" "${SERVERS:=4}" "${LOADS:=4}" "${WS_EVERY:=4}" "${LINES:=5}" "${LINE_RATE:=5}"
  : "${ROOM_SIZE:=100}" "${SPREAD:=2}" "${RATE:=200}" "${SECS:=5}" "${CONNECT_RATE:=2000}" "${SETUP_S:=60}"
  : "${SOURCE_IPS:=4}" "${TIMEOUT:=10}"
else
  : "${MEMBERS:=1000000}" "${SERVERS:=60}" "${LOADS:=60}" "${WS_EVERY:=6}" "${LINES:=5}" "${LINE_RATE:=0.1}"
  : "${ROOM_SIZE:=100}" "${SPREAD:=4}" "${RATE:=500}" "${SECS:=45}" "${CONNECT_RATE:=200}" "${SETUP_S:=900}"
  : "${SOURCE_IPS:=16}" "${TIMEOUT:=120}"
fi

if [[ -n ${OUT:-} ]]; then
  tmp=$OUT
  mkdir -p "$tmp"
else
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-million.XXXXXX")
fi
# Everything started here, and the kernel settings changed, are undone
# on any exit (kill_spawned stops what `spawn` started, by pid).
restore=()
cleanup() {
  local kv pid i
  # TERM to all at once, then KILL what is left after 10 s (by pid).
  for pid in "${SPAWNED_PIDS[@]}"; do alive "$pid" && kill -TERM "$pid" 2>/dev/null; done
  for ((i = 0; i < 100; i++)); do
    local left=0
    for pid in "${SPAWNED_PIDS[@]}"; do alive "$pid" && left=1 && break; done
    ((left)) || break
    sleep 0.1
  done
  for pid in "${SPAWNED_PIDS[@]}"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
  SPAWNED_PIDS=()
  for kv in "${restore[@]}"; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done
  if [[ -z ${OUT:-} ]]; then rm -rf "$tmp"; else log "kept $tmp"; fi
}
install_cleanup cleanup
set_nofile 20000
t_all=$SECONDS
if [[ -n ${REACTOR_BIN:-} ]]; then
  reactor=$REACTOR_BIN
else
  cargo build --release --quiet >&2
  reactor=$(release_bin)
fi
[[ -x $reactor ]] || die "missing $reactor"
command -v redis-server >/dev/null || die "redis-server not installed"
command -v redis-cli >/dev/null || die "redis-cli not installed"

# tune KEY VALUE: set a sysctl (if we may), remembering the old value.
tune() {
  local old
  old=$(sysctl -n "$1" 2>/dev/null | tr '\t' ' ') || return 0
  [[ $old == "$2" ]] && return 0
  if sysctl -q -w "$1=$2" >/dev/null 2>&1; then
    restore+=("$1=$old")
    log "sysctl $1: $old -> $2 (restored on exit)"
  fi
}
if ((!quick)); then
  tune net.ipv4.tcp_mem "1500000 3000000 4500000"
  (($(sysctl -n fs.file-max) < 4000000)) && tune fs.file-max 4000000
  tune net.ipv4.tcp_max_syn_backlog 16384
  tune net.core.somaxconn 16384
fi

meminfo() { # FILE: /proc/meminfo and the TCP line of sockstat
  { cat /proc/meminfo; grep '^TCP:' /proc/net/sockstat; } >"$1"
}
meminfo "$tmp/mem0.txt"
facts=$tmp/facts.tsv
: >"$facts"
fact() { printf '%s\t%s\n' "$1" "$2" >>"$facts"; }
get() { awk -F'\t' -v k="$1" '$1 == k {v = $2} END {print v}' "$facts"; }
fact sysctls "$(sysctl_desc)"

# --- Redis and the servers --------------------------------------------------
mapfile -t ports < <(free_ports $((2 * SERVERS + 1)))
rport=${ports[0]}
# Redis as if on a core of its own, where we may (root): round-robin
# real-time priority 1, so it runs whenever it has work (the kernel still
# keeps 5% of each second for everything else). At nice -10 against 120
# busy processes at nice 0, its share when it needs more is about 7% of
# the machine. Without the right, nice -10.
nice_redis=()
if chrt --rr 1 true 2>/dev/null; then
  nice_redis=(chrt --rr 1)
elif nice -n -10 true 2>/dev/null; then
  nice_redis=(nice -n -10)
fi
log "redis priority: ${nice_redis[*]:-default}"
spawn "$tmp/redis.log" "${nice_redis[@]}" redis-server --port "$rport" --bind 127.0.0.1 --save '' \
  --appendonly no --maxclients 10000
wait_tcp "$rport" "$SPAWNED" 10 || die "redis-server did not start"
spids=() chat_addrs=() ws_urls=()
for ((i = 0; i < SERVERS; i++)); do
  c=${ports[$((1 + 2 * i))]} h=${ports[$((2 + 2 * i))]}
  spawn "$tmp/server-$i.log" "$reactor" serve --chat "127.0.0.1:$c" --http "127.0.0.1:$h" \
    --bus "redis://127.0.0.1:$rport" --max-conns 20000 --idle-timeout 0 --ws-ping 10m --log-level warn ${SERVER_ARGS:-}
  spids+=("$SPAWNED") chat_addrs+=(--server "127.0.0.1:$c") ws_urls+=(--server "ws://127.0.0.1:$h/ws")
done
for ((i = 0; i < SERVERS; i++)); do
  c=${ports[$((1 + 2 * i))]}
  wait_tcp "$c" "${spids[$i]}" 30 || { tail "$tmp/server-$i.log" >&2; die "server $i did not start"; }
done
rss_servers() { local p s=0; for p in "${spids[@]}"; do s=$((s + $(rss_kib "$p"))); done; echo "$s"; }
rss0=$(rss_servers)
fact rss0_kib "$rss0"
log "redis on :$rport, $SERVERS servers up (RSS $((rss0 / 1024)) MiB in all)"

# --- the load --------------------------------------------------------------
# launch PART ARGS...: one load process per share of the members, each
# told its range; waits until every one is ready (or gone), then lets
# them go together. Sets lpids.
launch() {
  local part=$1 i n g=0 kind per t0 ready alive_n
  shift
  per=$(((MEMBERS + LOADS - 1) / LOADS))
  if [[ $part == rooms ]]; then per=$(((per + ROOM_SIZE - 1) / ROOM_SIZE * ROOM_SIZE)); fi
  lpids=()
  rm -f "$tmp/$part".*.ready "$tmp/$part.go"
  for ((i = 0; i < LOADS && g < MEMBERS; i++)); do
    n=$((MEMBERS - g < per ? MEMBERS - g : per))
    if ((i % WS_EVERY == WS_EVERY - 1)); then kind=ws; else kind=chat; fi
    # The first process holds the senders; the others are owed their lines.
    local servers=("${chat_addrs[@]}") extra=()
    if ((i > 0)); then extra=("${RECV_ARGS[@]}"); else extra=("${SEND_ARGS[@]}"); fi
    [[ $kind == ws ]] && servers=("${ws_urls[@]}")
    spawn "$tmp/$part.$i.log" "$reactor" bench "$kind" "${servers[@]}" -c "$n" --first-member "$g" \
      --connect-rate "$CONNECT_RATE" --source-ips "$SOURCE_IPS" --timeout "${TIMEOUT}s" \
      --ready-file "$tmp/$part.$i.ready" --go-file "$tmp/$part.go" \
      --json "$tmp/$part.$i.json" -q "$@" "${extra[@]}"
    lpids+=("$SPAWNED")
    echo "$kind $n" >"$tmp/$part.$i.kind"
    g=$((g + n))
  done
  t0=$SECONDS
  while ((SECONDS - t0 < SETUP_S)); do
    ready=0 alive_n=0
    for ((i = 0; i < ${#lpids[@]}; i++)); do
      [[ -e $tmp/$part.$i.ready ]] && ready=$((ready + 1))
      alive "${lpids[$i]}" && alive_n=$((alive_n + 1))
    done
    ((ready == ${#lpids[@]} || alive_n < ${#lpids[@]})) && break
    (((SECONDS - t0) % 10 == 0)) && log "$part: $ready of ${#lpids[@]} load processes ready after $((SECONDS - t0)) s"
    sleep 1
  done
  fact "$part.setup_s" $((SECONDS - t0))
  fact "$part.ready" "$ready of ${#lpids[@]}"
  subscribed "$part"
  peak "$part"
  touch "$tmp/$part.go"
}

# subscribed PART: waits (at most TIMEOUT s) until Redis counts every
# room's servers subscribed to its channel. A member is welcomed before
# its server's SUBSCRIBE is confirmed, and a line published before that
# never reaches the server (at most once, docs/BUS.md), though the load
# processes would count it owed. Records PART.subscribed.
subscribed() {
  local part=$1 prefix=reactor r n want=() chans=() t0=$SECONDS t0_us=${EPOCHREALTIME/./} got
  [[ ${SERVER_ARGS:-} =~ --bus-prefix[=\ ]+([^ ]+) ]] && prefix=${BASH_REMATCH[1]}
  if [[ $part == room ]]; then
    chans=("$prefix:room:lobby") want=($((MEMBERS < SERVERS ? MEMBERS : SERVERS)))
  else
    for ((r = 0; r * ROOM_SIZE < MEMBERS; r++)); do
      n=$((MEMBERS - r * ROOM_SIZE < ROOM_SIZE ? MEMBERS - r * ROOM_SIZE : ROOM_SIZE))
      ((n > SPREAD)) && n=$SPREAD
      ((n > SERVERS)) && n=$SERVERS
      chans+=("$prefix:room:b$r") want+=("$n")
    done
  fi
  while :; do
    # NUMSUB answers channel, count, channel, count...: the rooms short of theirs.
    got=$(redis-cli -p "$rport" PUBSUB NUMSUB "${chans[@]}" | awk -v want="${want[*]}" '
      BEGIN {split(want, w, " ")} NR % 2 == 0 && $1 < w[NR / 2] {short++} END {print short + 0}')
    if ((got == 0)); then
      fact "$part.subscribed" "all ${#chans[@]} rooms, $(((${EPOCHREALTIME/./} - t0_us) / 1000)) ms after ready"
      return 0
    fi
    if ((SECONDS - t0 >= TIMEOUT)); then
      log "$part: $got of ${#chans[@]} rooms not subscribed by all their servers after $TIMEOUT s: going on"
      fact "$part.subscribed" "$got of ${#chans[@]} rooms short after $TIMEOUT s"
      return 0
    fi
    sleep 0.1
  done
}

# peak PART: what the machine and the servers hold with every member in.
peak() {
  local held=0 p
  meminfo "$tmp/$1.mem.txt"
  fact "$1.rss_kib" "$(rss_servers)"
  for p in "${spids[@]}"; do held=$((held + $(fd_count "$p"))); done
  fact "$1.server_fds" "$held"
  fact "$1.sockstat" "$(grep '^TCP:' /proc/net/sockstat)"
}

# finish PART: waits for the load processes (bounded), merges their JSON.
finish() {
  local part=$1 bound=$2 i t0=$SECONDS files=()
  for i in "${lpids[@]}"; do
    while alive "$i" && ((SECONDS - t0 < bound)); do sleep 1; done
    alive "$i" && { log "load process $i still running after $bound s: stopped"; stop_pid "$i" TERM 5; }
  done
  for ((i = 0; i < ${#lpids[@]}; i++)); do
    if [[ -s $tmp/$part.$i.json ]]; then
      files+=("$tmp/$part.$i.json")
    else
      log "$part: load process $i left no result:"; tail -3 "$tmp/$part.$i.log" >&2
      fact "$part.failed" "$(($(get "$part.failed") + 1))"
    fi
  done
  ((${#files[@]})) || die "$part: no load process left a result"
  "$reactor" bench merge "${files[@]}" --json "$tmp/$part.json" >"$tmp/$part.merge.txt" 2>&1 || true
  sed 's/^/    /' "$tmp/$part.merge.txt" >&2
}

# --- 1. one room ------------------------------------------------------------
if [[ $only == *1* ]]; then
  step_header "1. one room of $MEMBERS members on $SERVERS servers"
  # Two senders (members 0 and 1, in the first load process), LINES lines
  # at LINE_RATE; every other process is owed each line once per member.
  dur=$(awk -v n="$LINES" -v r="$LINE_RATE" 'BEGIN {printf "%d", n / r + 1}')
  # (-n only where the senders are: a run with a count has no end time.)
  RECV_ARGS=(--expect-lines "$LINES") SEND_ARGS=(-n "$LINES")
  launch room --senders 2 --rate "$LINE_RATE" -d "$((dur + TIMEOUT))s"
  finish room $((dur + 3 * TIMEOUT + 30))
  step_done
fi

# --- 2. many rooms -----------------------------------------------------------
if [[ $only == *2* ]]; then
  rooms=$((MEMBERS / ROOM_SIZE))
  step_header "2. $rooms rooms of $ROOM_SIZE, each on $SPREAD servers"
  per_rate=$(awk -v r="$RATE" -v n="$LOADS" 'BEGIN {printf "%.3f", r / n}')
  RECV_ARGS=() SEND_ARGS=()
  launch rooms --room-size "$ROOM_SIZE" --room-spread "$SPREAD" --senders 2 --rate "$per_rate" -d "${SECS}s"
  finish rooms $((SECS + 3 * TIMEOUT + 30))
  step_done
fi

# --- the servers' end, and the table -----------------------------------------
bad=0
for ((i = 0; i < SERVERS; i++)); do
  stop_pid "${spids[$i]}" TERM 15
  [[ $STOP_RC == 0 ]] || bad=$((bad + 1))
done
fact servers_bad_exit "$bad"
fact panics "$(cat "$tmp"/server-*.log | grep -c panick || true)"
fact took_s $((SECONDS - t_all))

python3 - "$tmp" "$facts" "$MEMBERS" "$SERVERS" "$only" <<'EOF'
import json, os, sys
tmp, facts, members, servers, only = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
f = {}
for line in open(facts):
    k, _, v = line.rstrip("\n").partition("\t")
    f[k] = v
def mem(path):
    m = {}
    for line in open(path):
        if line.startswith("TCP:"):
            continue
        k, v = line.split(":", 1)
        m[k] = int(v.split()[0])
    return m
m0 = mem(os.path.join(tmp, "mem0.txt"))
def us(x):  # microseconds
    return "-" if x is None else (f"{x / 1e6:.2f} s" if x >= 1e6 else f"{x / 1e3:.1f} ms")
rows = []
def row(k, v):
    rows.append(f"| {k} | {v} |")
for part, title in (("room", "one room"), ("rooms", "many rooms")):
    path = os.path.join(tmp, f"{part}.json")
    if not os.path.exists(path):
        continue
    v = json.load(open(path))
    w = v.get("workload_counters", {})
    kinds = [open(os.path.join(tmp, n)).read().split() for n in sorted(os.listdir(tmp)) if n.startswith(part + ".") and n.endswith(".kind")]
    ws = sum(int(n) for k, n in kinds if k == "ws")
    heard, live = w.get("members_heard", 0), w.get("members", 0)
    row(f"**{title}**: members asked / in at time zero / heard a measured line", f"{members:,} / {live:,} ({ws:,} of the asked on WebSocket) / **{heard:,}**")
    row(f"{title}: setup (all load processes ready)", f"{f.get(part + '.setup_s')} s, {f.get(part + '.ready')} ready; failed processes {f.get(part + '.failed', '0')}; subscribed on the bus: {f.get(part + '.subscribed')}")
    row(f"{title}: deliveries seen / owed / lost", f"{v['requests']:,} / {w.get('deliveries_owed', 0):,} / {w.get('lost', 0):,}; gaps {w.get('gaps', 0)}, out of order {w.get('out_of_order', 0)}; errors {v['errors']} {dict((k, n) for k, n in v['errors_by_kind'].items() if n)}")
    lat = v.get("latency_us") or {}
    row(f"{title}: delivery latency p50 / p99 / max", f"{us(lat.get('p50', 0))} / {us(lat.get('p99', 0))} / {us(lat.get('max', 0))}")
    if part == "room" and v.get("line_deliveries"):
        lines = v["line_deliveries"]
        whole = sum(1 for l in lines if l[2] + 1 >= live)
        last = v["last_delivery_us"]
        row("one room: lines, delivered to every other member", f"{len(lines)}, {whole}")
        row("one room: time until a line's last delivery p50 / p99 / max", f"**{us(last['p50'])} / {us(last['p99'])} / {us(last['max'])}**")
    if part == "rooms":
        row("many rooms: deliveries/s (sum of the load processes)", f"**{v['requests_per_sec']:,.0f}**, lines sent {w.get('lines_sent', 0):,}")
    rss = int(f.get(part + ".rss_kib", 0)) * 1024
    rss0 = int(f.get("rss0_kib", 0)) * 1024
    if live:
        row(f"{title}: servers' RSS with everyone in (before any load)", f"{rss / 2**20:,.0f} MiB ({rss0 / 2**20:,.0f} MiB): **{(rss - rss0) / live:,.0f} B per member**")
    m1 = mem(os.path.join(tmp, f"{part}.mem.txt"))
    d = lambda k: (m1.get(k, 0) - m0.get(k, 0)) * 1024
    kern = sum(d(k) for k in ("Slab", "KernelStack", "PageTables", "Percpu"))
    row(f"{title}: machine, MemAvailable before / with everyone in", f"{m0['MemAvailable'] / 2**20:,.1f} GiB / {m1['MemAvailable'] / 2**20:,.1f} GiB ({-d('MemAvailable') / 2**30:,.2f} GiB used)")
    row(f"{title}: kernel: Slab (SUnreclaim) / PageTables / KernelStack, growth", f"{d('Slab') / 2**20:,.0f} ({d('SUnreclaim') / 2**20:,.0f}) / {d('PageTables') / 2**20:,.0f} / {d('KernelStack') / 2**20:,.0f} MiB: {kern / max(live, 1):,.0f} B per member")
    row(f"{title}: user space: AnonPages growth", f"{d('AnonPages') / 2**20:,.0f} MiB: {d('AnonPages') / max(live, 1):,.0f} B per member (servers, load processes, Redis)")
    row(f"{title}: kernel TCP (sockstat)", f"`{f.get(part + '.sockstat')}`")
    row(f"{title}: verdict", "valid" if v["valid"] else "INVALID: " + "; ".join(sorted(set(r.split(": ", 1)[-1] for r in v["invalid_reasons"])))[:300])
row("servers: bad exits / panics", f"{f.get('servers_bad_exit')} / {f.get('panics')}")
row("took", f"{int(f.get('took_s', 0)) // 60} min {int(f.get('took_s', 0)) % 60} s")
print("| what | measured |\n|---|---|")
print("\n".join(rows))
EOF
