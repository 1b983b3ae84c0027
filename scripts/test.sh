#!/usr/bin/env bash
# Every test of iyagi, in order of cost: unit tests of each codec, the
# rules and the store (both backends), the libFuzzer targets for a short
# time, the end-to-end suite against the real binary on each store
# (embedded RocksDB, then PostgreSQL), the cluster suites (three NATS
# servers, PostgreSQL and three nodes, with their faults), the browser
# suite (one file of it against a cluster behind HAProxy), the Debian
# package (built, installed, run, purged), then unit tests,
# the end-to-end suite and the cluster's functional
# suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
# A throwaway PostgreSQL (scripts/pg-throwaway.sh) serves the run and is
# removed at the end, whatever happens.
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
    # Start from the committed corpus (tests/fuzz/corpus/NAME), in a copy:
    # what libFuzzer finds goes to the copy, never into the repository.
    local corpus; corpus=$(mktemp -d)
    local seeds="tests/fuzz/corpus/$(basename "$f")"
    [ ! -d "$seeds" ] || cp -r "$seeds/." "$corpus/"
    echo "--- $(basename "$f") for ${FUZZ_SECONDS} s ($(find "$corpus" -type f | wc -l) seeds)"
    "$f" -max_total_time="$FUZZ_SECONDS" -print_final_stats=0 "$corpus" 2>&1 | tail -n 2 || rc=1
    rm -rf "$corpus"
  done
  return $rc
}

e2e() {  # e2e BINARY [STORE]: every single-node test file
  (cd tests/e2e && IYAGID="$PWD/../../$1" IYAGI_E2E_STORE="${2:-rocksdb}" IYAGI_E2E_PG_DIR="$PGDIR" \
     node --test --test-concurrency=2 $(ls ./*.test.mjs | grep -v '/cluster'))
}

# The first end-to-end run keeps every server's log and access log, and
# every token, password and message text its helpers saw (harness.mjs);
# the audit then checks that none of those reached a log.
LOGDIR=$(mktemp -d /tmp/iyagi-test-logs.XXXXXX)
e2e_logged() { IYAGI_E2E_LOGDIR="$LOGDIR" e2e "$@"; }
log_audit() { node scripts/log-audit.mjs "$LOGDIR" && rm -rf "$LOGDIR"; }

# deploy/: the alert rules are valid and behave as their unit tests say; the
# dashboard's queries parse.
alert_rules() {
  promtool check rules deploy/alerts.yml && promtool test rules deploy/alerts.test.yml &&
    node scripts/check-dashboard.mjs deploy/grafana-dashboard.json
}

cluster() {  # cluster BINARY FILES...: 3 NATS servers, PostgreSQL, 3 nodes per file (lib/cluster.mjs)
  local bin=$1; shift
  (cd tests/e2e && IYAGID="$PWD/../../$bin" node --test --test-concurrency=1 "$@")
}

tsan_e2e() {  # the single-node suite on build/tsan/iyagid
  (export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp"; e2e build/tsan/iyagid)
}

web() {  # browser end-to-end tests of the web client (Playwright + Debian's Chromium)
  (cd tests/web && IYAGID="$PWD/../../build/rel/iyagid" node --test --test-concurrency=1 ./*.test.mjs)
}

# The suite's PostgreSQL: one server, a fresh database per test server (and
# per unit-test store). A failed start is a failed suite: the PostgreSQL
# tests then fail too rather than skip.
PGDIR=$(mktemp -d /tmp/iyagi-test-pg.XXXXXX)
chmod 755 "$PGDIR"
trap 'scripts/pg-throwaway.sh stop "$PGDIR" >/dev/null 2>&1 || true' EXIT
pg_start() {
  IYAGI_TEST_PG_URL=$(scripts/pg-throwaway.sh start "$PGDIR") && export IYAGI_TEST_PG_URL IYAGI_TEST_PG_DIR="$PGDIR" &&
    echo "PostgreSQL at $IYAGI_TEST_PG_URL"
}

export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="abort_on_error=0:detect_leaks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

step "throwaway PostgreSQL" pg_start
step "build" make -s -j"$JOBS"
step "unit tests" make -s -j"$JOBS" unit
step "fuzz (${FUZZ_SECONDS} s each)" fuzz_all
step "end-to-end" e2e_logged build/rel/iyagid
step "log audit (no secret in any log)" log_audit
step "alert rules and dashboard (promtool)" alert_rules
step "end-to-end on PostgreSQL" e2e build/rel/iyagid postgres
step "cluster (3 NATS, PostgreSQL, 3 nodes)" cluster build/rel/iyagid ./cluster_infra.test.mjs ./cluster.test.mjs ./cluster_faults.test.mjs ./cluster_tokens.test.mjs
[ -f tests/web/package.json ] && step "web client (Chromium)" web
# The .deb built, installed (as root: CI's throwaway machine), run as its user, removed, purged.
step "make install" tests/pkg/install.test.sh
step "Debian package" tests/pkg/deb.test.sh
step "build (ASan+UBSan)" make -s -j"$JOBS" VARIANT=asan
step "unit tests (ASan+UBSan)" make -s -j"$JOBS" VARIANT=asan unit
step "end-to-end (ASan+UBSan)" e2e build/asan/iyagid
step "cluster (ASan+UBSan)" cluster build/asan/iyagid ./cluster.test.mjs
# ThreadSanitizer over the single-node suite; tests/tsan.supp mutes what
# happens inside the uninstrumented RocksDB (and its libstdc++ and LZ4) only.
step "build (ThreadSanitizer)" make -s -j"$JOBS" VARIANT=tsan all
step "end-to-end (ThreadSanitizer)" tsan_e2e

echo
[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
