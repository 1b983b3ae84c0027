#!/usr/bin/env bash
# Every test of iyagi, in order of cost: unit tests of each codec and the
# store, the libFuzzer targets for a short time, the end-to-end suite
# against the real binary, then unit tests and the end-to-end suite again
# under AddressSanitizer + UndefinedBehaviorSanitizer.
# Ends with one line "N passed, N failed" counting the suites.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
JOBS=${JOBS:-2}
passed=0; failed=0; failures=()

step() {  # step NAME COMMAND...
  local name=$1; shift
  echo "=== $name"
  local t0=$SECONDS
  if "$@"; then passed=$((passed + 1)); echo "=== $name: ok ($((SECONDS - t0)) s)"
  else failed=$((failed + 1)); failures+=("$name"); echo "=== $name: FAILED ($((SECONDS - t0)) s)"; fi
}

fuzz_all() {
  make -s -j"$JOBS" fuzz || return 1
  local rc=0
  for f in build/fuzz/fuzz_*; do
    local corpus; corpus=$(mktemp -d)
    echo "--- $(basename "$f") for ${FUZZ_SECONDS} s"
    "$f" -max_total_time="$FUZZ_SECONDS" -print_final_stats=0 "$corpus" 2>&1 | tail -n 2 || rc=1
    rm -rf "$corpus"
  done
  return $rc
}

e2e() {  # e2e BINARY
  (cd tests/e2e && IYAGID="$PWD/../../$1" node --test --test-concurrency=2 ./*.test.mjs)
}

web() {  # browser end-to-end tests of the web client (Playwright + Debian's Chromium)
  (cd tests/web && IYAGID="$PWD/../../build/rel/iyagid" node --test --test-concurrency=1 ./*.test.mjs)
}

export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="abort_on_error=0:detect_leaks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

step "build" make -s -j"$JOBS"
step "unit tests" make -s -j"$JOBS" unit
step "fuzz (${FUZZ_SECONDS} s each)" fuzz_all
step "end-to-end" e2e build/rel/iyagid
[ -f tests/web/package.json ] && step "web client (Chromium)" web
step "build (ASan+UBSan)" make -s -j"$JOBS" VARIANT=asan
step "unit tests (ASan+UBSan)" make -s -j"$JOBS" VARIANT=asan unit
step "end-to-end (ASan+UBSan)" e2e build/asan/iyagid

echo
[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
