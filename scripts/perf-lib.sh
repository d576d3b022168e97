# shellcheck shell=bash
# Helpers for the scripts that write measured figures into docs/PERFORMANCE.md
# (bench-vs-peers.sh, scale.sh). Source it (it sources lib.sh); do not run it.
#   . "$(dirname "${BASH_SOURCE[0]}")/perf-lib.sh"

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# machine_desc: one line naming the machine the figures come from.
machine_desc() {
  local cpu mem
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
  printf 'Linux %s, %s, %s cores, %s RAM, %s' "$(uname -r)" "${cpu:-unknown CPU}" \
    "$(nproc)" "$mem" "$(date -u '+%Y-%m-%d %H:%M UTC')"
}

# source_desc DIR: the commit the measured binary was built from (DIR's
# checkout), with +dirty when DIR has uncommitted changes.
source_desc() {
  local c d=
  c=$(git -C "$1" rev-parse --short HEAD 2>/dev/null) || { echo "no commit"; return; }
  git -C "$1" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && d=+dirty
  echo "$c$d"
}

# set_nofile N: soft open-files limit N (or the hard limit if that is lower).
set_nofile() {
  local hard
  hard=$(ulimit -Hn)
  if [[ $hard == unlimited ]] || ((hard >= $1)); then ulimit -n "$1"; else ulimit -n "$hard"; fi
}

# doc_block DOC NAME FILE: put FILE's text into DOC between the lines
# `<!-- NAME:begin -->` and `<!-- NAME:end -->`, replacing what was there;
# appended at the end of DOC when the markers are not there yet.
doc_block() {
  python3 - "$@" <<'EOF'
import sys
doc, name, body = sys.argv[1], sys.argv[2], open(sys.argv[3]).read().rstrip("\n")
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = open(doc).read()
block = f"{begin}\n{body}\n{end}"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + block + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(doc, "w").write(text)
EOF
}

# json_field FILE KEY...: print a value from a `reactor bench --json`
# result; KEYs walk into nested objects (missing: empty).
json_field() {
  python3 - "$@" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)
EOF
}

# sysctl_desc: the kernel settings that bound many connections on loopback.
sysctl_desc() {
  local k out=()
  for k in net.ipv4.ip_local_port_range net.core.somaxconn net.ipv4.tcp_max_syn_backlog \
    net.ipv4.tcp_tw_reuse net.ipv4.tcp_syncookies fs.nr_open; do
    out+=("\`$k\` = $(sysctl -n "$k" 2>/dev/null | tr '\t' ' ' || echo '?')")
  done
  out+=("open-files hard limit (\`ulimit -Hn\`) = $(ulimit -Hn)")
  local IFS=';' all
  all="${out[*]}"
  echo "${all//;/; }"
}

# reactor_bin: the reactor binary to measure: $REACTOR_BIN if set, else
# `cargo build --release` here and the binary in cargo's target directory.
reactor_bin() {
  if [[ -n ${REACTOR_BIN:-} ]]; then
    echo "$REACTOR_BIN"
    return
  fi
  cargo build --release --quiet >&2
  release_bin
}

# doc_flags ARGS...: the flags of the scripts that write into
# docs/PERFORMANCE.md: sets quick (--quick) and write_doc (0 with
# --no-doc); --help prints the script's header comment and exits.
# shellcheck disable=SC2034  # quick, write_doc: read by the caller
doc_flags() {
  quick=0 write_doc=1
  local a
  for a in "$@"; do
    case $a in
      --quick) quick=1 ;;
      --no-doc) write_doc=0 ;;
      -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) die "unknown argument $a (see --help)" ;;
    esac
  done
}
