#!/usr/bin/env bash
# bench/ab.sh — before/after in the same run: two iyagid binaries, alternated.
#
#   bench/ab.sh BEFORE AFTER [ROUNDS] -- SCENARIO ARGS...
#   e.g. bench/ab.sh /work/baseline/iyagid build/rel/iyagid 3 -- chat --count 500 --duration 10
#
# Each round runs the scenario once against each binary (BEFORE first in odd
# rounds, AFTER first in even ones, so a drift of the machine's load does not
# favour one), each time on a fresh copy of the bench seed (bench/run.sh makes
# it), `--threads 2 --rate-limits off`, with build/rel/iyagi-bench (BENCH=...)
# and --server-pid. Extra server flags: AB_SERVER_ARGS="--flag v ...".
# Prints one line per run and the median per binary of: msgs/s delivered,
# server % of a core, µs per message (per delivery for groups), syscalls per
# message, ack and end-to-end p50/p99 (ms), and per run the server's CPU by
# thread (TID order, as iyagi-bench reports it). Correctness errors fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n '2,14p' "$0"; exit 2; }
A=$1 B=$2
shift 2
ROUNDS=3
if [ "$1" != -- ]; then ROUNDS=$1; shift; fi
[ "$1" = -- ] && shift
BENCH=${BENCH:-build/rel/iyagi-bench}
SEED=build/bench/seed-u15000-g20x100
[ -f "$SEED/users.txt" ] || { echo "ab: no seed; BENCH_ONLY=none bench/run.sh makes it"; exit 1; }
command -v jq >/dev/null || { echo "ab: needs jq (scripts/deps.sh bench)"; exit 1; }
TMP=$(mktemp -d build/bench/ab.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SPID=""
stop() { if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then kill -TERM "$SPID"; wait "$SPID" || true; fi; SPID=""; }
trap 'stop; rm -rf "$TMP"' EXIT

status=0
one() {  # one NAME BINARY SCENARIO-ARGS...
    local name=$1 bin=$2
    shift 2
    rm -rf "$TMP/data"
    cp -a "$SEED/data" "$TMP/data"
    # shellcheck disable=SC2086
    "$bin" --listen 127.0.0.1:$PORT --data "$TMP/data" --threads 2 --rate-limits off ${AB_SERVER_ARGS:-} \
        >"$TMP/server.log" 2>&1 &
    SPID=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    local rc=0
    "$BENCH" "$@" --users "$SEED/users.txt" --port $PORT --server-pid $SPID --workers 2 --label "$name" \
        >"$TMP/one.txt" 2>&1 || rc=$?
    stop
    [ $rc -eq 0 ] || { echo "ab: $name exit $rc"; grep -v '^{' "$TMP/one.txt"; status=1; }
    grep '^{' "$TMP/one.txt" | tail -1 >>"$TMP/all.jsonl" || true
}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then one before "$A" "$@"; one after "$B" "$@"
    else one after "$B" "$@"; one before "$A" "$@"; fi
done
# shellcheck disable=SC2016
jq -rs '
  def med: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
  def row: "\(.label)\t\(.delivered_per_s // .pages_per_s)/s\t\(.cpu_pct // "-") %\t\(.us_per_delivery // .us_per_msg // "-") us\t\(.syscalls_per_msg // "-") sys\tack \(.ack.p50_ms // "-")/\(.ack.p99_ms // "-")\te2e \(.e2e.p50_ms // "-")/\(.e2e.p99_ms // "-") ms\terrors \(.errors)";
  (.[] | row, "\tthreads (us per message): \(.threads // [] | map("t\(.i) \(.comm) \(.us_per_msg)") | join(", "))"),
  "median of each:",
  (group_by(.label)[] | {label: .[0].label, delivered_per_s: (map(.delivered_per_s // .pages_per_s) | med),
     cpu_pct: (map(.cpu_pct) | med), us_per_msg: (map(.us_per_msg) | med),
     us_per_delivery: (map(.us_per_delivery) | med), syscalls_per_msg: (map(.syscalls_per_msg) | med),
     ack: {p50_ms: (map(.ack.p50_ms) | med), p99_ms: (map(.ack.p99_ms) | med)},
     e2e: {p50_ms: (map(.e2e.p50_ms) | med), p99_ms: (map(.e2e.p99_ms) | med)},
     errors: (map(.errors) | add)} | row)' "$TMP/all.jsonl"
echo "ab: $A (before) vs $B (after): iyagi-bench $* ; $ROUNDS rounds"
exit $status
