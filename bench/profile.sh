#!/usr/bin/env bash
# bench/profile.sh — where the server's CPU per message goes (issue 15).
#
#   bench/profile.sh [SHAPE...]      SHAPE: chat (default) | pipelined | group | rate5k
#
# For each shape: a fresh copy of the bench seed (bench/run.sh makes it),
# iyagid --threads 2 on a free loopback port, iyagi-bench driving the shape
# for 2 + 14 s, and `perf record -g` of the server (and, BENCH_STORE=postgres,
# of the throwaway cluster's postmaster and backends) for 10 s inside the
# measured window. Prints, per shape:
#   - iyagi-bench's own figures (CPU per message, syscalls, CPU by thread);
#   - the share of the samples per thread (perf report -s pid: one line per
#     thread) and, for each thread over 3 %, its top functions by self time;
#   - the top functions of the whole server by self time, and by inclusive
#     time (call chains from frame pointers: the release build has none of
#     its own, so inclusive figures stop at iyagid's frames; self time is
#     exact whatever the stacks).
# Needs perf (Debian: linux-perf) and perf_event access (root, or
# kernel.perf_event_paranoid <= 1 for a user); without it, say so and use the
# per-thread CPU split iyagi-bench prints anyway (from /proc/PID/task).
#
# Environment: IYAGID, BENCH (binaries), BENCH_STORE=postgres, PROFILE_DIR
# (where perf.data and the reports stay; default build/bench/profile.*),
# PROFILE_FREQ (sampling Hz, default 999), PROFILE_CALLGRAPH (perf record --call-graph:
# fp by default; "dwarf" unwinds through frames without frame pointers, at
# ~100x the data).
set -euo pipefail
cd "$(dirname "$0")/.."

IYAGID=${IYAGID:-build/rel/iyagid}
BENCH=${BENCH:-build/rel/iyagi-bench}
FREQ=${PROFILE_FREQ:-999}
CG=${PROFILE_CALLGRAPH:-fp}
SEED=build/bench/seed-u15000-g20x100
command -v perf >/dev/null || { echo "profile: no perf (apt-get install linux-perf)"; exit 1; }
[ -f "$SEED/users.txt" ] || { echo "profile: no seed; run bench/run.sh once (BENCH_ONLY=none bench/run.sh makes it)"; exit 1; }
[ $# -gt 0 ] || set -- chat
mkdir -p build/bench
OUT=${PROFILE_DIR:-$(mktemp -d build/bench/profile.XXXXXX)}
mkdir -p "$OUT"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

SPID="" PGDIR="" BPID=""
cleanup() {
    [ -z "$BPID" ] || ! kill -0 "$BPID" 2>/dev/null || kill "$BPID"
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then kill -TERM "$SPID"; wait "$SPID" || true; fi
    SPID="" BPID=""
    [ -z "$PGDIR" ] || scripts/pg-throwaway.sh stop "$PGDIR" >/dev/null 2>&1 || true
    PGDIR=""
}
trap cleanup EXIT

top_syms() {  # top_syms DATA N [perf report options...]: "share  function" lines
    local data=$1 n=$2
    shift 2
    perf report -i "$data" --no-children -s sym --stdio -g none "$@" 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -"$n"
}

# The reports cut perf's output short with head: no pipefail from here on.
set +o pipefail
for shape in "$@"; do
    case $shape in
      chat)      args="chat --count 500" ;;
      pipelined) args="direct --count 1000 --window 4" ;;
      group)     args="group --count 20 --window 1" ;;
      rate5k)    args="direct --count 500 --rate 5000" ;;
      *) echo "profile: unknown shape $shape"; exit 2 ;;
    esac
    rm -rf "$OUT/data"
    STORE=() DB=()
    if [ "${BENCH_STORE:-rocksdb}" = postgres ]; then
        PGDIR=$(mktemp -d /tmp/iyagi-prof-pg.XXXXXX)
        chmod 755 "$PGDIR"
        scripts/pg-throwaway.sh start "$PGDIR" >/dev/null
        url=$(scripts/pg-throwaway.sh createdb "$PGDIR" bench)
        mkdir -p "$OUT/data"
        "$IYAGID" admin create-users --data "$OUT/data" --store "$url" --count 15000 --prefix bu \
            --groups 20 --group-size 100 --out "$OUT/users.txt" >/dev/null
        U="$OUT/users.txt"
        STORE=(--store "$url")
    else
        cp -a "$SEED/data" "$OUT/data"
        U="$SEED/users.txt"
    fi
    "$IYAGID" --listen 127.0.0.1:$PORT --data "$OUT/data" ${STORE[@]+"${STORE[@]}"} --threads 2 \
        --rate-limits off >"$OUT/server-$shape.log" 2>&1 &
    SPID=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    pids=$SPID
    if [ -n "$PGDIR" ]; then
        pm=$(head -1 "$PGDIR/data/postmaster.pid")
        DB=(--db-pid "$pm")
    fi
    # shellcheck disable=SC2086
    "$BENCH" $args --warmup 2 --duration 14 --users "$U" --port $PORT --server-pid $SPID ${DB[@]+"${DB[@]}"} \
        --workers 2 --label "profile-$shape" >"$OUT/bench-$shape.txt" 2>&1 &
    BPID=$!
    # Connections (about a second) and the 2 s warm-up first: record inside
    # the measured window (2 to 16 s after the run starts).
    sleep 4
    if [ -n "$PGDIR" ]; then
        # The postmaster's children now: the server's pool of backends among them.
        pids="$pids,$pm$(pgrep -P "$pm" | sed 's/^/,/' | tr -d '\n')"
    fi
    if ! perf record -F "$FREQ" --call-graph "$CG" -p "$pids" -o "$OUT/perf-$shape.data" -- sleep 10 >"$OUT/perf-$shape.log" 2>&1; then
        echo "profile: perf record failed (no perf_event access here?):"
        cat "$OUT/perf-$shape.log"
    fi
    wait "$BPID" || true
    BPID=""
    cleanup
    {
        echo "==== $shape: iyagi-bench $args ($(basename "$IYAGID"), ${BENCH_STORE:-rocksdb})"
        grep -v '^{' "$OUT/bench-$shape.txt" | sed 's/^/  /'
        if [ -f "$OUT/perf-$shape.data" ]; then
        echo "  -- samples per thread (perf report -s pid; comm is the thread's name)"
        perf report -i "$OUT/perf-$shape.data" --no-children -s pid --stdio -g none 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -20 | sed 's/^/  /'
        for t in $(perf report -i "$OUT/perf-$shape.data" --no-children -s pid --stdio -g none 2>/dev/null |
                   grep -v '^#' | awk 'NF && $1+0 >= 3 {print $2}' | cut -d: -f1); do
            echo "  -- thread $t: top functions by self time (share of all samples)"
            top_syms "$OUT/perf-$shape.data" 12 --tid "$t" | sed 's/^/  /'
        done
        echo "  -- whole process(es): top 30 functions by self time"
        top_syms "$OUT/perf-$shape.data" 30 | sed 's/^/  /'
        echo "  -- by shared object"
        perf report -i "$OUT/perf-$shape.data" --no-children -s dso --stdio -g none 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -12 | sed 's/^/  /'
        fi
    } | tee "$OUT/report-$shape.txt"
done
echo "profile: reports and perf.data in $OUT"
