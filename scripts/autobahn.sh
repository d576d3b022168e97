#!/usr/bin/env bash
# The Autobahn|Testsuite against reactor's WebSocket echo endpoint
# (/ws/echo), over ws:// and over wss:// (the HTTPS port, a certificate
# from `reactor cert`), cases 1 to 10 (301 cases; 12 and 13, compression,
# are excluded by the harness). Fails if any case FAILED on either, or if
# the suite did not run to the end. The reports stay under OUT.
#
#   BIN=target/release/reactor OUT=/tmp/ab bash scripts/autobahn.sh
#
# Env: BIN (default: the release binary), OUT (default: a temp dir),
# AUTOBAHN_TOOLS (default: ../shared/tools/autobahn), AUTOBAHN_HOME (the
# suite's install, default: TARGET_DIR/autobahn, kept between runs),
# SUITE_TIMEOUT (seconds per run of the suite, default 300).
#
# wstest does not verify the server's certificate (with no "hostname" in
# its spec, autobahn 0.10.9 connects with Twisted's ClientContextFactory,
# which checks nothing), so before the suite a Python `websockets` client
# that does verify it (our certificate as its only CA, SNI localhost)
# echoes a message over wss://, and checks that its permessage-deflate
# offer was declined.
#
# The whole-server memory cap is set (--max-client-memory 1g) rather than
# left to its default, a quarter of the machine's or the cgroup's memory:
# case 9.1.6 echoes a 16 MiB message, which holds 32 MiB of buffers, and a
# machine or container with under 128 MiB (or a cap some runner sets) would
# evict it. The suite tests the protocol; the cap has its own tests.
#
# For each FAILED case the script prints autobahn's verdict on it (result,
# closing behaviour, duration) and the server's warnings, so a failure in
# CI can be read from CI's output alone.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root=$(repo_root)
bin=${BIN:-$(release_bin)}
tools=${AUTOBAHN_TOOLS:-$root/../shared/tools/autobahn}
home=${AUTOBAHN_HOME:-$(target_dir)/autobahn}
suite_timeout=${SUITE_TIMEOUT:-300}
[[ -x $bin ]] || die "$bin not built"
[[ -f $tools/run.sh ]] || die "no Autobahn harness at $tools"
out=${OUT:-}
if [[ -z $out ]]; then
  out=$(mktemp -d "${TMPDIR:-/tmp}/reactor-autobahn.XXXXXX")
  install_cleanup 'rm -rf "$out"'
else
  mkdir -p "$out"
  install_cleanup
fi

bash "$tools/setup.sh" "$home" >"$out/setup.log" 2>&1 || { cat "$out/setup.log" >&2; die "Autobahn setup failed"; }
head -3 "$out/setup.log"

"$bin" cert --out "$out/tls" >/dev/null
mapfile -t ports < <(free_ports 2)
p_http=${ports[0]} p_https=${ports[1]}
srvlog=$out/serve.log
spawn "$srvlog" "$bin" serve --http "127.0.0.1:$p_http" --https "127.0.0.1:$p_https" \
  --tls-cert "$out/tls/cert.pem" --tls-key "$out/tls/key.pem" \
  --ws-max-message 16m --max-client-memory 1g --log-level warn
srv=$SPAWNED
fail() { log "autobahn: $*"; log "--- server log (tail) ---"; tail -20 "$srvlog" >&2 || true; exit 1; }
wait_tcp "$p_http" "$srv" 10 || fail "http port $p_http does not accept"
wait_tcp "$p_https" "$srv" 10 || fail "https port $p_https does not accept"

# wss:// with the certificate verified, and a browser-like offer of
# permessage-deflate (websockets makes one) declined.
timeout 20 "$home/tools/bin/python" - "$p_https" "$out/tls/cert.pem" <<'EOF' || fail "verified wss:// echo failed"
import asyncio, ssl, sys
from websockets.asyncio.client import connect
port, cafile = int(sys.argv[1]), sys.argv[2]
async def main():
    ctx = ssl.create_default_context(cafile=cafile)
    async with connect(f"wss://localhost:{port}/ws/echo", ssl=ctx) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert ext is None, f"extension negotiated: {ext}"
        for msg in ["verified ☃", bytes(range(256)) * 300]:
            await ws.send(msg)
            got = await ws.recv()
            assert got == msg, f"echo differs: {len(got)} of {len(msg)}"
    print("wss:// with the certificate verified: text and binary echoed; permessage-deflate declined")
asyncio.run(main())
EOF

# explain_failed DIR: autobahn's own words on each FAILED case in DIR.
explain_failed() {
  python3 - "$1" <<'PY' || true
import json, os, sys
out = sys.argv[1]
for agent, cases in json.load(open(os.path.join(out, "index.json"))).items():
    for case, r in sorted(cases.items()):
        if r.get("behavior") != "FAILED":
            continue
        d = json.load(open(os.path.join(out, r["reportfile"])))
        print(f"   {case}: {d.get('result')} | close: {d.get('resultClose')}"
              f" ({d.get('wasNotCleanReason') or 'clean'}) | {d.get('duration')} ms")
PY
}

status=0
for url in "ws://127.0.0.1:$p_http/ws/echo" "wss://127.0.0.1:$p_https/ws/echo"; do
  scheme=${url%%:*}
  rc=0
  AUTOBAHN_TIMEOUT=$suite_timeout AUTOBAHN_AGENT=reactor \
    bash "$tools/run.sh" "$home" "$url" "$out/$scheme" >"$out/$scheme.txt" 2>&1 || rc=$?
  echo "== $url (run.sh exit $rc)"
  sed 's/^/   /' "$out/$scheme.txt"
  alive "$srv" || fail "the server died during the $scheme run"
  if ((rc != 0)); then
    status=1
    explain_failed "$out/$scheme"
    echo "   server warnings so far:"
    grep -E 'WARN|ERROR' "$srvlog" | tail -20 | sed 's/^/     /' || echo "     none"
  fi
done

stop_pid "$srv" TERM 8
[[ $STOP_RC == 0 ]] || fail "exit status $STOP_RC after SIGTERM, want 0"
((status == 0)) || die "Autobahn: some case FAILED, or the suite did not finish (reports in $out)"
echo "autobahn: no case FAILED over ws:// and wss://"
