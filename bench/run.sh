#!/usr/bin/env bash
# bench/run.sh — the standard benchmark suite of iyagi (issues 6 and 15).
#
#   bench/run.sh            (or: make bench; about 5 minutes, never part of make test)
#
# 1. Prepares, once, a seed data directory with 15,000 users, a session each
#    and 20 groups of 100 (`iyagid admin create-users`: one Argon2id hash for
#    all users, see docs/BENCHMARKS.md), cached in build/bench/seed-*; every
#    run starts from a fresh copy of it.
# 2. Runs the suite with build/rel/iyagi-bench (SUITE below), each scenario
#    against a new build/rel/iyagid --threads 2 on a free loopback port and a
#    fresh copy of the seed (PostgreSQL: one server, settled between runs).
# 3. Stops the server by its PID (SIGTERM), prints every figure of issue 15
#    next to its target with met / not met, and appends a section with the
#    date, commit, machine, exact commands and figures to docs/BENCHMARKS.md.
#
# Every direct/chat/group/history run reports, over its measured window, the
# server's CPU per message (per delivery for groups) and % of a core, its
# read+write system calls per message (/proc/PID/io syscr+syscw), the CPU per
# message of each server thread, and (BENCH_STORE=postgres) PostgreSQL's own
# CPU per message (--db-pid: the throwaway cluster's postmaster and children).
#
# The CLI other branches rely on (keep it stable):
#   iyagi-bench chat   --count 500 (default) ...      1 in flight per sender
#   iyagi-bench direct --count P --window 4 ...       pipelined
#   iyagi-bench direct --count P --rate R ...         fixed rate
#   iyagi-bench group|idle|history|resync ...
#   common: --users U --port PORT --server-pid PID [--db-pid PID] --workers 2
#           --warmup S --duration S --label L; the last stdout line is JSON.
# bench/ab.sh BEFORE AFTER [ROUNDS] -- SCENARIO ARGS: two binaries alternated on
# fresh seed copies, medians of CPU/msg, syscalls/msg, throughput, latency;
# bench/profile.sh SHAPE...: perf of the server inside the measured window.
#
# Environment: BENCH_NO_APPEND=1 prints the section instead of appending it;
# BENCH_KEEP=1 keeps the run directory (build/bench/run.*); BENCH_STORE=postgres
# runs the server on a throwaway PostgreSQL (scripts/pg-throwaway.sh) seeded
# the same way (admin create-users --store), instead of the embedded store;
# IYAGID and BENCH name other binaries (a before/after comparison);
# BENCH_ONLY="label ..." runs only those runs of the suite (a quick look).
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
SERVER_ARGS=()
start_server() {  # start_server EXTRA_ARGS...: on $RUN/data, log to $RUN/server.log
    SERVER_ARGS=("$@")
    "$IYAGID" --listen 127.0.0.1:$PORT --data "$RUN/data" ${STORE_ARGS[@]+"${STORE_ARGS[@]}"} --threads 2 "$@" >>"$RUN/server.log" 2>&1 &
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

# Issue 15's shapes first: chat-like (1 in flight per sender, 500 pairs),
# pipelined (4 in flight, 1,000 pairs), groups of 100, fixed rates of 5,000
# and 10,000 msgs/s over 1,000 connections; then issue 6's.
SUITE=(
  "idle --count 15000 --settle 6 --label idle-15k"
  "chat --count 500 --warmup 2 --duration 10 --label chat-500"
  "direct --count 1000 --window 4 --warmup 2 --duration 10 --label direct-full"
  "group --count 20 --window 1 --warmup 2 --duration 10 --label group-20x100"
  "direct --count 500 --rate 5000 --warmup 2 --duration 10 --label rate-5k"
  "direct --count 500 --rate 10000 --warmup 2 --duration 10 --label rate-10k"
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
DBPID=()
db_pid() {  # the throwaway PostgreSQL's postmaster: its CPU and its children's are the database's
    [ -n "$PGDIR" ] && [ -f "$PGDIR/data/postmaster.pid" ] && DBPID=(--db-pid "$(head -1 "$PGDIR/data/postmaster.pid")")
    return 0
}
# Each scenario starts on a settled server: what the one before left in the
# background (the search indexer catching up after a saturating run, RocksDB
# compacting the data it wrote) would otherwise be charged to the next one's
# CPU per message (a fixed 5,000/s after the saturating runs measured 190-195
# us/msg, 40 % of it RocksDB's compactions and 13-25 % the indexer's backlog,
# against 84 us on a fresh copy). The embedded store: a new server on a fresh
# copy of the seed (3.8 MB, under a second). PostgreSQL (seeded once): the
# same server once no compaction runs and the indexer's count has not moved
# for a second (it looks every 250 ms when caught up); at most 60 s.
settle() {
    local prev="" cur m i
    for i in $(seq 60); do
        m=$(curl -fs "http://127.0.0.1:$PORT/metrics" 2>/dev/null) || return 0
        cur=$(awk '/^iyagi_search_indexed_total /{x=$2} /^iyagi_rocksdb_running_compactions /{c=$2} END{print x "/" (c+0)}' <<<"$m")
        if [ "$cur" = "$prev" ] && [ "${cur#*/}" = 0 ]; then return 0; fi
        prev=$cur
        sleep 1
    done
    echo "bench: the server did not settle in 60 s (indexer/compactions: $cur)"
}
fresh_server() {
    if [ "${BENCH_STORE:-rocksdb}" = postgres ]; then settle; return; fi
    stop_one
    rm -rf "$RUN/data"
    cp -a "$SEED/data" "$RUN/data"
    start_server ${SERVER_ARGS[@]+"${SERVER_ARGS[@]}"}
}
run_suite() {  # run_suite SCENARIO...: against $SPID
    local s rc
    db_pid
    for s in "$@"; do
        if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" ${s##*--label } "* ]]; then continue; fi
        fresh_server
        echo "bench: iyagi-bench $s"
        rc=0
        # shellcheck disable=SC2086
        timeout 300 "$BENCH" $s --users $U --port $PORT --server-pid $SPID ${DBPID[@]+"${DBPID[@]}"} --workers $WORKERS >"$RUN/one.txt" 2>"$RUN/one.err" || rc=$?
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

# ---- every figure of issue 15 next to its target, met or not ----
targets() {
    jq -rs '
      def run(l): map(select(.label == l)) | first;
      # On PostgreSQL the database does most of the storage work: its CPU counts with the server'"'"'s.
      def cpu(r; f; dbf): if r[f] == null then null else r[f] + (r[dbf] // 0) end;
      def row(name; v; unit; op; t; tunit):
        if v == null then "| \(name) | not measured | \(op) \(t) \(tunit) | — |"
        else "| \(name) | \(v * 100 | round / 100) \(unit) | \(op) \(t) \(tunit) | \(if (op == "<=" and v <= t) or (op == ">=" and v >= t) or (op == "<" and v < t) then "met" else "**not met**" end) |" end;
      "| figure | measured | target | |",
      "| --- | --- | --- | --- |",
      row("chat-like 1:1 (chat-500): server CPU per message\($db)"; cpu(run("chat-500"); "us_per_msg"; "db_us_per_msg"); "µs"; "<="; 20; "µs"),
      row("pipelined 1:1 (direct-full): server CPU per message\($db)"; cpu(run("direct-full"); "us_per_msg"; "db_us_per_msg"); "µs"; "<="; 10; "µs"),
      row("group of 100 (group-20x100): server CPU per delivery\($db)"; cpu(run("group-20x100"); "us_per_delivery"; "db_us_per_delivery"); "µs"; "<="; 1.5; "µs"),
      row("fixed 5,000 msgs/s (rate-5k): server CPU\($db)"; cpu(run("rate-5k"); "cpu_pct"; "db_cpu_pct"); "% of a core"; "<="; 20; "%"),
      row("fixed 5,000 msgs/s (rate-5k): server CPU per message\($db)"; cpu(run("rate-5k"); "us_per_msg"; "db_us_per_msg"); "µs"; "<="; 40; "µs"),
      row("fixed 10,000 msgs/s (rate-10k): send→ack p50"; run("rate-10k").ack.p50_ms; "ms"; "<="; 0.5; "ms"),
      row("fixed 10,000 msgs/s (rate-10k): send→ack p99"; run("rate-10k").ack.p99_ms; "ms"; "<="; 2; "ms"),
      row("fixed 10,000 msgs/s (rate-10k): send→delivery p50"; run("rate-10k").e2e.p50_ms; "ms"; "<="; 0.5; "ms"),
      row("fixed 10,000 msgs/s (rate-10k): send→delivery p99"; run("rate-10k").e2e.p99_ms; "ms"; "<="; 2; "ms"),
      row("idle (idle-15k): server memory per connection"; run("idle-15k").bytes_per_conn; "B"; "<="; 1024; "B"),
      row("idle (idle-15k): connect + auth"; run("idle-15k").connect_per_s; "conn/s"; ">="; 20000; "conn/s"),
      row("issue 6: pipelined 1:1 delivered (direct-full)"; run("direct-full").delivered_per_s; "msgs/s"; ">="; 50000; "msgs/s"),
      row("issue 6: group-100 deliveries (group-20x100)"; run("group-20x100").delivered_per_s; "/s"; ">="; 300000; "/s"),
      row("issue 6: history pages (history-200)"; run("history-200").pages_per_s; "pages/s"; ">="; 20000; "pages/s"),
      row("issue 6: p99 send→delivery at 50,000/s offered (direct-50k)"; run("direct-50k").e2e.p99_ms; "ms"; "<="; 25; "ms"),
      row("issue 12: p99 send→ack under 10,000 slowloris (slowloris-10k)"; run("slowloris-10k").ack.p99_ms; "ms"; "<"; 50; "ms")
    ' --arg db "$([ "${BENCH_STORE:-}" = postgres ] && echo ' + PostgreSQL')" "$RUN/results.jsonl"
}
: >"$RUN/targets.md"
if command -v jq >/dev/null; then
    targets >"$RUN/targets.md"
    echo
    echo "bench: every figure next to its target (store: ${BENCH_STORE:-rocksdb}):"
    cat "$RUN/targets.md"
    echo
fi

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
    echo "Server binary: \`$IYAGID\` ($("$IYAGID" --version 2>/dev/null | head -1 || echo 'no --version')); bench: \`$BENCH\`."
    echo "client: \`iyagi-bench\`, $WORKERS worker processes, on the same machine (they share the CPUs)."
    echo "Load average at the end of the run: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews the figures)."
    echo
    if command -v jq >/dev/null; then
        echo "Every figure of issue 15 next to its target (the targets are the embedded store's):"
        echo
        cat "$RUN/targets.md"
        echo
        echo "Per run, over the measured window: the server's CPU (% of one core; µs per message, per delivery for groups, per page for history), its read+write system calls per message (/proc/PID/io syscr+syscw), PostgreSQL's own CPU when it is the store, and latency."
        echo
        echo "| run | throughput | server CPU | syscalls/msg (r + w) | database CPU | ack p50 / p99 (ms) | e2e p50 / p99 (ms) | errors |"
        echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
        jq -r '
          def f(x): if x == null then "—" else (x * 100 | round / 100 | tostring) end;
          def cpu: if .us_per_msg == null then "—" else "\(.cpu_pct) %, \(f(.us_per_msg)) µs/msg\(if .us_per_delivery then ", \(f(.us_per_delivery)) µs/delivery" else "" end)" end;
          def sys: if .syscalls_per_msg == null then "—" else "\(f(.syscalls_per_msg)) (\(f(.reads_per_msg)) + \(f(.writes_per_msg)))" end;
          def db: if .db_us_per_msg == null then "—" else "\(.db_cpu_pct) %, \(f(.db_us_per_msg)) µs/msg" end;
          def l(h): if h == null then "—" else "\(h.p50_ms) / \(h.p99_ms)" end;
          if .scenario == "idle" then
            "| \(.label) | \(.connect_per_s) conn/s connect+auth; \(.bytes_per_conn) B/conn (\(.conns_ok) conns) | — | — | — | connect \(l(.connect)) | — | \(.errors) |"
          elif .scenario == "direct" or .scenario == "chat" or .scenario == "group" then
            "| \(.label) | \(.delivered_per_s) \(if .scenario == "group" then "deliveries/s (\(.acked_per_s) msgs/s)" else "msgs/s delivered" end)\(if .rate > 0 then " (offered \(.rate)\(if (.shed // 0) > 0 then "; \(.shed) sends shed as busy" else "" end))" else "" end)\(if .slowloris then ", while \(.slowloris) slowloris connections (\(.slowloris_408) answered 408)" else "" end) | \(cpu) | \(sys) | \(db) | \(l(.ack)) | \(l(.e2e)) | \(.errors) |"
          elif .scenario == "history" then
            "| \(.label) | \(.pages_per_s) pages/s (limit \(.limit)) | \(cpu) | \(sys) | \(db) | page \(l(.page)) | — | \(.errors) |"
          else
            "| \(.label) | \(.count) devices x \(.missed) msgs caught up in \(.all_caught_up_s) s | — | — | — | reconnect \(l(.reconnect)) | caught up \(l(.caught_up)) | \(.errors) |"
          end' "$RUN/results.jsonl"
        echo
        echo "Server CPU by thread (µs per message; threads in creation order: see docs/BENCHMARKS.md, \"Threads in the bench output\"):"
        echo
        jq -r 'select(.threads) | "- \(.label): " + ([.threads[] | select(.cpu_pct >= 1) | "t\(.i) \(.comm) \(.us_per_msg * 100 | round / 100) (\(.cpu_pct) %)"] | join(", "))' "$RUN/results.jsonl"
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
