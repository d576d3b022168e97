#!/usr/bin/env bash
# Coverage-guided fuzzing of the protocol state machines: builds the
# targets in fuzz/ (cargo-fuzz, libFuzzer with AddressSanitizer) and runs
# each for SECONDS, one after another. Exits 1 if any target crashed (a
# panic, a failed check, a sanitizer report, a timeout or the memory limit);
# the crashing input is then in fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 s, every target)
#
# Stable Rust only: libFuzzer needs `-Zsanitizer`/`-Cpasses` flags, which
# the stable compiler takes with RUSTC_BOOTSTRAP=1 (set here, for these
# builds only). cargo-fuzz is installed if missing (about a minute).
# Each target starts from its seeds in fuzz/corpus/TARGET/ (kept in git)
# and grows a working corpus in fuzz/target/corpus/TARGET/ (not in git),
# so later runs go on where earlier ones stopped.
#
# Environment: FUZZ_ARGS  extra libFuzzer flags (e.g. "-max_len=8192");
#   FUZZ_SANITIZER [address]  cargo-fuzz's -s: address, or none (the crate
#   forbids unsafe code, so ASan mostly watches dependencies; none builds
#   faster, as CI uses it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root=$(repo_root)
cd "$root/fuzz"

seconds=${1:-60}
shift || true
[[ $seconds =~ ^[0-9]+$ ]] || die "SECONDS must be a number, got '$seconds'"
targets=("$@")
((${#targets[@]})) || targets=(http_request chat_line path_normalise ws_frame resp)

# Pinned so a new cargo-fuzz cannot change CI's behaviour unannounced.
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "cargo-fuzz $cargo_fuzz_version"; then
  log "installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --quiet
fi

export RUSTC_BOOTSTRAP=1
# The targets make a small served root under TMPDIR: keep those in one
# place and remove them at the end.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/reactor-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export TMPDIR=$tmp

san=${FUZZ_SANITIZER:-address}
log "building fuzz targets (release, debug assertions, sanitizer: $san)"
for t in "${targets[@]}"; do
  cargo fuzz build -O -s "$san" "$t" >"$tmp/build.log" 2>&1 || {
    cat "$tmp/build.log" >&2
    die "cargo fuzz build $t failed"
  }
done

bin_dir=target/$(rustc -vV | sed -n 's/^host: //p')/release
failed=()
for t in "${targets[@]}"; do
  [[ -d corpus/$t ]] || die "no seed corpus fuzz/corpus/$t"
  work=target/corpus/$t
  mkdir -p "$work" "artifacts/$t"
  logf=$tmp/$t.log
  start=$(date +%s)
  # The binary built above, run directly (`cargo fuzz run` would rebuild,
  # and a tree changed meanwhile would fail as if the target crashed).
  # libFuzzer: new inputs go to the first corpus dir, seeds are read only.
  # -rss_limit_mb/-malloc_limit_mb: memory must stay bounded (a leak or a
  # huge allocation is a crash); -timeout: one input may take at most 10 s.
  # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
  if ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0} "$bin_dir/$t" \
    -artifact_prefix="artifacts/$t/" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 ${FUZZ_ARGS:-} \
    "$work" "corpus/$t" >"$logf" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$t")
  fi
  took=$(($(date +%s) - start))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" | tail -1 || true)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logf" | tail -1 || true)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$logf" | tail -1 || true)
  printf '%-15s %-5s %12s execs in %4ss (%s/s)  %s\n' \
    "$t" "$status" "${runs:-?}" "$took" "${rate:-?}" "${cov:-}"
  if [[ $status != ok ]]; then
    log "--- $t: last lines of the fuzzer log ---"
    tail -n 40 "$logf" >&2
    log "--- crashing inputs in fuzz/artifacts/$t/:"
    ls -l "artifacts/$t" >&2 || true
    log "reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O $t artifacts/$t/<file>"
  fi
done

if ((${#failed[@]})); then
  die "fuzz: crashed: ${failed[*]}"
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
