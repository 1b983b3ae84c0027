#!/usr/bin/env bash
# bench/run.sh — the standard benchmark suite of iyagi (issue 6).
#
#   bench/run.sh            (or: make bench)
#
# 1. Prepares, once, a seed data directory with 15,000 users, a session each
#    and 20 groups of 100 (`iyagid admin create-users`: one Argon2id hash for
#    all users, see docs/BENCHMARKS.md), cached in build/bench/seed-*; every
#    run starts from a fresh copy of it.
# 2. Starts build/rel/iyagid --threads 2 on a free loopback port.
# 3. Runs the suite with build/rel/iyagi-bench (about 3 minutes).
# 4. Stops the server by its PID (SIGTERM) and appends a section with the date,
#    commit, machine, exact commands and figures to docs/BENCHMARKS.md.
#
# Environment: BENCH_NO_APPEND=1 prints the section instead of appending it;
# BENCH_KEEP=1 keeps the run directory (build/bench/run.*); BENCH_STORE=postgres
# runs the server on a throwaway PostgreSQL (scripts/pg-throwaway.sh) seeded
# the same way (admin create-users --store), instead of the embedded store;
# IYAGID and BENCH name other binaries (a before/after comparison).
set -euo pipefail
cd "$(dirname "$0")/.."

IYAGID=${IYAGID:-build/rel/iyagid}
BENCH=${BENCH:-build/rel/iyagi-bench}
USERS=15000
NGROUPS=20
GROUP_SIZE=100
WORKERS=2
[ -x "$IYAGID" ] && [ -x "$BENCH" ] || make -s all

SEED=build/bench/seed-u$USERS-g${NGROUPS}x$GROUP_SIZE
if [ ! -f "$SEED/users.txt" ]; then
    echo "bench: preparing $SEED (one-time: $USERS users, $NGROUPS groups of $GROUP_SIZE)"
    rm -rf "$SEED.tmp"
    mkdir -p "$SEED.tmp"
    start=$(date +%s)
    "$IYAGID" admin create-users --data "$SEED.tmp/data" --count $USERS --prefix bu \
        --groups $NGROUPS --group-size $GROUP_SIZE --out "$SEED.tmp/users.txt"
    echo "bench: seed ready in $(( $(date +%s) - start )) s"
    rm -rf "$SEED"
    mv "$SEED.tmp" "$SEED"
fi

mkdir -p build/bench
RUN=$(mktemp -d build/bench/run.XXXXXX)
STORE_ARGS=()
PGDIR=""
if [ "${BENCH_STORE:-rocksdb}" = postgres ]; then
    # A throwaway PostgreSQL seeded like the embedded store's seed directory.
    PGDIR=$(mktemp -d /tmp/iyagi-bench-pg.XXXXXX)
    chmod 755 "$PGDIR"
    scripts/pg-throwaway.sh start "$PGDIR" >/dev/null
    PGURL=$(scripts/pg-throwaway.sh createdb "$PGDIR" bench)
    mkdir -p "$RUN/data"
    start=$(date +%s)
    "$IYAGID" admin create-users --data "$RUN/data" --store "$PGURL" --count $USERS --prefix bu \
        --groups $NGROUPS --group-size $GROUP_SIZE --out "$RUN/users.txt"
    echo "bench: PostgreSQL seeded in $(( $(date +%s) - start )) s"
    U="$RUN/users.txt"
    STORE_ARGS=(--store "$PGURL")
else
    cp -a "$SEED/data" "$RUN/data"
    U="$SEED/users.txt"
fi

# A free loopback port: ask the kernel for one, then use it at once.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
       echo $(( 20000 + RANDOM % 20000 )))

# An iyagid from before the hardening (IYAGID=... for a before/after run) has no --rate-limits.
RL_OFF=(--rate-limits off)
"$IYAGID" --help 2>&1 | grep -q -- --rate-limits || RL_OFF=()
SPID=""
start_server() {  # start_server EXTRA_ARGS...: on $RUN/data, log to $RUN/server.log
    "$IYAGID" --listen 127.0.0.1:$PORT --data "$RUN/data" "${STORE_ARGS[@]}" --threads 2 "$@" >>"$RUN/server.log" 2>&1 &
    SPID=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "bench: the server did not start"; cat "$RUN/server.log"; exit 1; }
}
stop_one() {
    if [ -n "$SPID" ] && kill -0 $SPID 2>/dev/null; then
        kill -TERM $SPID
        wait $SPID || true
    fi
}
stop_server() {
    stop_one
    [ -z "$PGDIR" ] || scripts/pg-throwaway.sh stop "$PGDIR" || true
    PGDIR=""
}
trap stop_server EXIT
start_server "${RL_OFF[@]}"

SUITE=(
  "idle --count 15000 --settle 6 --label idle-15k"
  "direct --count 1000 --rate 10000 --warmup 2 --duration 10 --label direct-10k"
  "direct --count 1000 --window 4 --warmup 2 --duration 10 --label direct-full"
  "group --count 20 --window 1 --warmup 2 --duration 10 --label group-20x100"
  "history --count 200 --window 2 --limit 50 --prefill 200 --warmup 2 --duration 10 --label history-200"
  "resync --count 1000 --missed 200 --label resync-1k"
  # Last: if the offered 50,000/s is past what the server sustains, its
  # backlog would delay every later run.
  "direct --count 1000 --rate 50000 --warmup 2 --duration 10 --label direct-50k"
)
# Then a second server on a fresh copy with every default limit on (rate
# limits too: 200 pairs at 2,000 msgs/s is 5 msgs/s per user, within the
# per-user 20/s), the same load without and with a slowloris of 10,000
# connections from 127.1.x.y (issue 12: p99 below 50 ms under it).
SUITE_LIMITS=(
  "direct --count 200 --rate 2000 --warmup 2 --duration 20 --label limits-on-2k"
  "direct --count 200 --rate 2000 --warmup 2 --duration 20 --slowloris 10000 --label slowloris-10k"
)
: >"$RUN/out.txt"
: >"$RUN/results.jsonl"
status=0
run_suite() {  # run_suite SCENARIO...: against $SPID
    local s rc
    for s in "$@"; do
        echo "bench: iyagi-bench $s"
        rc=0
        # shellcheck disable=SC2086
        timeout 300 "$BENCH" $s --users $U --port $PORT --server-pid $SPID --workers $WORKERS >"$RUN/one.txt" 2>"$RUN/one.err" || rc=$?
        if [ $rc -ne 0 ]; then
            echo "bench: '$s' exit $rc (3: the run found errors, see the counters)" | tee -a "$RUN/out.txt"
            status=1
        fi
        cat "$RUN/one.txt" "$RUN/one.err"
        grep -v '^{' "$RUN/one.txt" >>"$RUN/out.txt" || true
        cat "$RUN/one.err" >>"$RUN/out.txt"
        grep '^{' "$RUN/one.txt" >>"$RUN/results.jsonl" || true
        kill -0 $SPID 2>/dev/null || { echo "bench: THE SERVER DIED (see $RUN/server.log)" | tee -a "$RUN/out.txt"; status=1; return; }
    done
}
run_suite "${SUITE[@]}"
stop_one
if [ "${BENCH_STORE:-rocksdb}" != postgres ]; then
    rm -rf "$RUN/data"
    cp -a "$SEED/data" "$RUN/data"
fi
start_server
run_suite "${SUITE_LIMITS[@]}"
stop_server
trap - EXIT

# ---- the section for docs/BENCHMARKS.md ----
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit (with uncommitted changes)"
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
{
    echo
    echo "## $(date -u +%Y-%m-%dT%H:%MZ) — commit $commit"
    echo
    echo "Machine: $(nproc) CPUs ($cpu), $mem, Linux $(uname -r). Server: \`iyagid --threads 2\` on the ${BENCH_STORE:-rocksdb} store$([ "${BENCH_STORE:-}" = postgres ] && echo ' (PostgreSQL 15, throwaway, fsync on, same machine)');"
    echo "client: \`iyagi-bench\`, $WORKERS worker processes, on the same machine (they share the CPUs)."
    echo "Load average at the end of the run: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews the figures)."
    echo
    if command -v jq >/dev/null; then
        echo "| run | figure | target | latency p50 / p90 / p99 / max (ms) | errors |"
        echo "| --- | --- | --- | --- | --- |"
        jq -r '
          def l(h): "\(h.p50_ms) / \(h.p90_ms) / \(h.p99_ms) / \(h.max_ms)";
          if .scenario == "idle" then
            "| \(.label) | \(.bytes_per_conn) B/conn (\(.conns_ok) conns); \(.connect_per_s) conn/s | <= 2048 B/conn; >= 5000 conn/s | connect+auth \(l(.connect)) | \(.errors) |"
          elif .scenario == "direct" and .slowloris then
            "| \(.label) | \(.delivered_per_s) delivered msgs/s (offered \(.rate)), limits on, while \(.slowloris) slow connections (open min >= \(.slowloris_open_min), mean \(.slowloris_open_mean)) were \(.slowloris_408) times answered 408; server RSS \(.server_rss_attack_kib) KiB | p99 ack < 50 ms | e2e \(l(.e2e)); ack \(l(.ack)) | \(.errors) |"
          elif .scenario == "direct" and (.label | startswith("limits-on")) then
            "| \(.label) | \(.delivered_per_s) delivered msgs/s (offered \(.rate)), every default limit on | baseline of the slowloris run | e2e \(l(.e2e)); ack \(l(.ack)) | \(.errors) |"
          elif .scenario == "direct" then
            "| \(.label) | \(.delivered_per_s) delivered msgs/s (offered \(if .rate > 0 then .rate else "full speed" end)) | >= 50000/s; p99 e2e <= 25 ms at 50K, <= 5 ms at 10K | e2e \(l(.e2e)); ack \(l(.ack)) | \(.errors) |"
          elif .scenario == "group" then
            "| \(.label) | \(.delivered_per_s) deliveries/s (\(.acked_per_s) msgs/s) | >= 300000/s | e2e \(l(.e2e)); ack \(l(.ack)) | \(.errors) |"
          elif .scenario == "history" then
            "| \(.label) | \(.pages_per_s) pages/s (limit \(.limit)) | >= 20000/s | page \(l(.page)) | \(.errors) |"
          else
            "| \(.label) | \(.caught_up) devices x \(.missed) msgs caught up in \(.all_caught_up_s) s | — | caught-up \(l(.caught_up)); reconnect \(l(.reconnect)) | \(.errors) |"
          end' "$RUN/results.jsonl"
        echo
    fi
    echo "Commands (PORT, PID: the server's; U: $U):"
    echo
    echo '```'
    if [ "${BENCH_STORE:-}" = postgres ]; then
        echo "scripts/pg-throwaway.sh start PGDIR; scripts/pg-throwaway.sh createdb PGDIR bench   # -> URL"
        echo "iyagid admin create-users --data DIR --store URL --count $USERS --prefix bu --groups $NGROUPS --group-size $GROUP_SIZE --out U"
        echo "iyagid --listen 127.0.0.1:PORT --data DIR --store URL --threads 2 --rate-limits off"
    else
        echo "iyagid admin create-users --data DIR --count $USERS --prefix bu --groups $NGROUPS --group-size $GROUP_SIZE --out U"
        echo "iyagid --listen 127.0.0.1:PORT --data COPY-OF-DIR --threads 2 --rate-limits off"
    fi
    for s in "${SUITE[@]}"; do echo "iyagi-bench $s --users U --port PORT --server-pid PID --workers $WORKERS"; done
    echo "# then a fresh COPY-OF-DIR, every default limit on (rate limits too):"
    echo "iyagid --listen 127.0.0.1:PORT --data COPY-OF-DIR --threads 2"
    for s in "${SUITE_LIMITS[@]}"; do echo "iyagi-bench $s --users U --port PORT --server-pid PID --workers $WORKERS"; done
    echo '```'
    echo
    echo "<details><summary>Full output and JSON lines</summary>"
    echo
    echo '```'
    cat "$RUN/out.txt"
    cat "$RUN/results.jsonl"
    echo '```'
    echo "</details>"
} >"$RUN/section.md"

if [ "${BENCH_NO_APPEND:-}" = 1 ]; then
    cat "$RUN/section.md"
else
    cat "$RUN/section.md" >>docs/BENCHMARKS.md
    echo "bench: appended to docs/BENCHMARKS.md"
fi
[ "${BENCH_KEEP:-}" = 1 ] && echo "bench: run directory $RUN" || rm -rf "$RUN"
exit $status
