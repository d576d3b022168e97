# shellcheck shell=bash disable=SC2034  # SPAWNED, STOP_RC: read by callers
# Shared shell helpers for .ci/run and scripts/*.sh. Source it; do not run it.
#   . "$(dirname "$0")/lib.sh"
# Everything here uses loopback only, bounded waits, and ports picked by the
# kernel (bind to port 0), never fixed ports.

# Pids started through `spawn`; `kill_spawned` (installed as an EXIT trap by
# `install_cleanup`) stops whatever is still running.
SPAWNED_PIDS=()

# log MSG...: a line on stderr, so stdout stays clean for tables.
log() { printf '%s\n' "$*" >&2; }

# die MSG...: print and exit 1 (the EXIT trap kills the servers).
die() { log "error: $*"; exit 1; }

# repo_root: the top of the git checkout holding this file.
repo_root() {
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/.." && pwd)
}

# target_dir: the directory cargo builds into here: CARGO_TARGET_DIR, a
# `build.target-dir` in a cargo config, or target/ (cargo says which).
target_dir() {
  (cd "$(repo_root)" && cargo metadata --format-version 1 --no-deps) |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# release_bin: the release `reactor` binary cargo builds here.
release_bin() { echo "$(target_dir)/release/reactor"; }

# raise_nofile: soft open-files limit up to the hard limit.
raise_nofile() { ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; }

# free_ports N: N distinct free TCP+UDP loopback ports, one per line. All N
# sockets are held open together so the kernel cannot hand out one twice;
# each port is also checked free for UDP (so --udp can use it).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
n, held, out = int(sys.argv[1]), [], []
while len(out) < n:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        held.append(t)
        continue
    held += [t, u]
    out.append(port)
print("\n".join(map(str, out)))
EOF
}

# spawn LOGFILE CMD...: start CMD in the background, stdout+stderr to LOGFILE,
# record its pid in SPAWNED and in the global SPAWNED_PIDS.
spawn() {
  local logfile=$1; shift
  "$@" >"$logfile" 2>&1 </dev/null &
  SPAWNED=$!
  SPAWNED_PIDS+=("$SPAWNED")
}

# alive PID: PID runs (a zombie, exited but not yet reaped by `wait`, is not
# alive; `kill -0` would say it is).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# stop_pid PID [SIGNAL] [TIMEOUT_S]: send SIGNAL (default TERM), wait up to
# TIMEOUT_S (default 5) for exit, then SIGKILL. Sets STOP_RC to the exit
# status (from `wait`, so only for our own children).
stop_pid() {
  local pid=$1 sig=${2:-TERM} t=${3:-5} i
  STOP_RC=
  if alive "$pid"; then
    kill -s "$sig" "$pid" 2>/dev/null || true
  fi
  for ((i = 0; i < t * 20; i++)); do
    alive "$pid" || break
    sleep 0.05
  done
  if alive "$pid"; then
    log "pid $pid still running ${t}s after SIG$sig; killing it"
    kill -s KILL "$pid" 2>/dev/null || true
  fi
  if wait "$pid" 2>/dev/null; then STOP_RC=0; else STOP_RC=$?; fi
}

# kill_spawned: SIGKILL-free best effort: TERM, short wait, then KILL, for
# every pid from `spawn` still alive.
kill_spawned() {
  local pid
  for pid in "${SPAWNED_PIDS[@]}"; do
    if alive "$pid"; then stop_pid "$pid" TERM 2; fi
  done
  SPAWNED_PIDS=()
}

# install_cleanup [EXTRA_CMD]: EXIT/INT/TERM trap that kills spawned servers
# (and runs EXTRA_CMD, e.g. removing a temp dir).
install_cleanup() {
  CLEANUP_EXTRA=${1:-}
  trap 'kill_spawned; eval "$CLEANUP_EXTRA"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# wait_log FILE PATTERN PID [TIMEOUT_S]: poll until FILE contains PATTERN
# (fixed string). Fails if PID exits first or TIMEOUT_S (default 10) passes.
wait_log() {
  local file=$1 pat=$2 pid=$3 t=${4:-10} i
  for ((i = 0; i < t * 20; i++)); do
    grep -qF -- "$pat" "$file" 2>/dev/null && return 0
    alive "$pid" || { log "pid $pid exited while waiting for '$pat'"; return 1; }
    sleep 0.05
  done
  log "timed out after ${t}s waiting for '$pat' in $file"
  return 1
}

# wait_tcp PORT PID [TIMEOUT_S]: poll until 127.0.0.1:PORT accepts a TCP
# connection. Fails if PID exits first or TIMEOUT_S (default 10) passes.
wait_tcp() {
  local port=$1 pid=$2 t=${3:-10} i
  for ((i = 0; i < t * 20; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    alive "$pid" || { log "pid $pid exited while waiting for port $port"; return 1; }
    sleep 0.05
  done
  log "timed out after ${t}s waiting for port $port"
  return 1
}

# cpu_ticks PID: utime+stime of PID in clock ticks (/proc/PID/stat fields 14
# and 15; parsed after the last ')' since the command name may hold spaces).
cpu_ticks() {
  local stat rest
  stat=$(cat "/proc/$1/stat") || return 1
  rest=${stat##*) }
  # rest starts at field 3 (state): field 14 is word 12, field 15 is word 13.
  # shellcheck disable=SC2086  # split on purpose
  set -- $rest
  echo $(( ${12} + ${13} ))
}

# rss_kib PID: resident set size in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# fd_count PID: open file descriptors of PID.
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

# median X...: the median of the numbers (mean of the middle two if even).
median() {
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'
}

# step_header NAME: a visible header; pairs with step_done for timing.
step_header() {
  STEP_NAME=$1
  STEP_T0=$(date +%s.%N)
  printf '\n==> %s\n' "$1"
}

# step_done: print how long the current step took and add it to STEP_TIMES.
STEP_TIMES=()
step_done() {
  local dt
  dt=$(awk -v a="$STEP_T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  printf '<== %s: ok (%ss)\n' "$STEP_NAME" "$dt"
  STEP_TIMES+=("$(printf '%-48s %7ss' "$STEP_NAME" "$dt")")
}
