#!/usr/bin/env bash
# bench/cluster.sh — the cluster benchmark (issue 11): iyagi-bench against several
# iyagid nodes on one PostgreSQL and a 3-server NATS cluster, all on this machine.
#
#   bench/cluster.sh          (BENCH_NODES=6 BENCH_IDLE=100000 by default)
#
# 1. scripts/cluster.sh up: 3 NATS servers (routes), a throwaway PostgreSQL,
#    BENCH_NODES iyagid nodes (--threads 1 each: 2 cores for all of them).
# 2. iyagid admin create-users --store: BENCH_IDLE users with a session each, and
#    20 groups of 100.
# 3. iyagi-bench, spreading its connections over the nodes through discovery
#    (direct and group first, on a quiet cluster; idle last):
#      idle      BENCH_IDLE connections authenticated at once (8 worker processes,
#                each under the 20,000 open-file cap), memory per connection
#                summed over every node process, and the NATS servers' share
#                (their RSS and subscription count sampled while it runs)
#      direct    1,000 pairs at 2,000 msgs/s, then at full speed (4 in flight):
#                senders and receivers land on different nodes (discovery spreads
#                the pair's two users independently)
#      group     20 groups of 100 members spread over the nodes
# 4. scripts/cluster.sh down. Prints a section for docs/BENCHMARKS.md.
#
# Environment: BENCH_NODES, BENCH_IDLE, BENCH_KEEP=1 (keep the cluster's dir),
# BENCH_ONLY (a regex: only the runs whose command line matches, e.g. "group|idle").
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${BENCH_NODES:-6}
IDLE=${BENCH_IDLE:-100000}
BENCH=build/rel/iyagi-bench
IYAGID=build/rel/iyagid
[ -x "$IYAGID" ] && [ -x "$BENCH" ] || make -s all

DIR=$(mktemp -d /tmp/iyagi-bench-cluster.XXXXXX)
rmdir "$DIR"
down() { [ "${BENCH_KEEP:-}" = 1 ] || scripts/cluster.sh down "$DIR" >/dev/null 2>&1 || true; }
trap down EXIT
CLUSTER_NODES=$NODES IYAGID_ARGS="--threads 1 --rate-limits off" scripts/cluster.sh up "$DIR" >"$DIR.up.log" 2>&1 ||
    { cat "$DIR.up.log"; exit 1; }
PIDS=$(grep -oE '^NODE[0-9]+_PID=[0-9]+' "$DIR/cluster.env" | cut -d= -f2 | paste -sd, -)
PORT=$(grep -oE '^NODE1_PORT=[0-9]+' "$DIR/cluster.env" | cut -d= -f2)
STORE=$(grep -oE '^STORE_URL=.*' "$DIR/cluster.env" | tail -n 1 | cut -d= -f2-)
[ -n "$PIDS" ] && [ -n "$PORT" ] && [ -n "$STORE" ] || { echo "bench: cannot read $DIR/cluster.env"; cat "$DIR/cluster.env"; exit 1; }

U=$DIR/users.txt
t0=$(date +%s)
"$IYAGID" admin create-users --data "$DIR/admin" --store "$STORE" --count "$IDLE" --prefix cb \
    --groups 20 --group-size 100 --out "$U" >/dev/null
echo "bench: $IDLE users seeded in $(( $(date +%s) - t0 )) s; nodes $PIDS"

COMMON="--users $U --port $PORT --server-pid $PIDS --discovery"
# The latency run first, on a quiet cluster; the idle run last: its 100,000
# connections all leaving at once (presence, unsubscribes) would weigh on
# whatever ran right after it.
SUITE=(
  "direct --count 1000 --rate 2000 --warmup 2 --duration 10 --workers 2 --label cluster-direct-2k"
  "direct --count 1000 --window 4 --warmup 2 --duration 10 --workers 2 --label cluster-direct-full"
  "group --count 20 --window 1 --warmup 2 --duration 10 --workers 2 --label cluster-group-20x100"
  "idle --count $IDLE --workers 8 --settle 8 --label cluster-idle-$IDLE"
)
# The NATS servers' share of a connection (each node subscribes per user): their
# summed RSS and one server's subscription count, sampled every second while
# the idle scenario holds its connections.
NATS_PIDS=$(grep -oE '^NATS[0-9]+_PID=[0-9]+' "$DIR/cluster.env" | cut -d= -f2)
NATS_HTTP=$(grep -oE '^NATS1_HTTP_PORT=[0-9]+' "$DIR/cluster.env" | cut -d= -f2)
nats_rss() { local p t=0; for p in $NATS_PIDS; do t=$((t + $(awk '/^VmRSS/{print $2}' "/proc/$p/status"))); done; echo "$t"; }
nats_subs() { curl -s --max-time 2 "http://127.0.0.1:$NATS_HTTP/varz" | grep -oE '"subscriptions": *[0-9]+' | grep -oE '[0-9]+$'; }
# The nodes' CPU time (clock ticks, utime + stime, summed), for the idle cost of
# the held connections (heartbeats every 5 s, presence).
node_ticks() { local p t=0; for p in ${PIDS//,/ }; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
sample_nats() {   # writes "peak_rss_kib peak_subs" to nats.peak when killed; "ms ticks" lines to cpu.log
    local r s peak_r=0 peak_s=0
    trap 'echo "$peak_r $peak_s" >"$DIR/nats.peak"; exit 0' TERM
    : >"$DIR/cpu.log"
    while :; do
        r=$(nats_rss); s=$(nats_subs || echo 0)
        [ "$r" -le "$peak_r" ] || peak_r=$r
        [ "${s:-0}" -le "$peak_s" ] || peak_s=$s
        echo "$(date +%s%3N) $(node_ticks)" >>"$DIR/cpu.log"
        sleep 1 & wait $!
    done
}
# The nodes' CPU (in cores) over the idle scenario's settle: the samples from
# 7 s to 2 s before its end (all connected, none closing yet).
settle_cores() {
    tail -n 8 "$DIR/cpu.log" | head -n 6 | awk -v hz="$(getconf CLK_TCK)" \
        'NR == 1 {t0 = $1; c0 = $2} {t1 = $1; c1 = $2} END {if (t1 > t0) printf "%.3f", (c1 - c0) / hz / ((t1 - t0) / 1000)}'
}

# PostgreSQL's cost of a message: WAL written per stored message over the direct
# runs, and the bytes on disk (tables and indexes) per message at the end.
sql() { psql "$STORE" -XAtqc "$1"; }
relbytes() { sql "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
                  WHERE c.relkind = 'r' AND c.relname ~ '^($1)(_[0-9]+)?\$'"; }

OUT=$DIR/out.txt
: >"$OUT"
NATS_NOTE=""
PG_NOTE=""
for s in "${SUITE[@]}"; do
    [[ -z "${BENCH_ONLY:-}" || "$s" =~ $BENCH_ONLY ]] || continue
    echo "bench: iyagi-bench $s"
    sampler=""
    if [[ "$s" == idle* ]]; then
        nats_before=$(nats_rss); subs_before=$(nats_subs || echo 0)
        sample_nats & sampler=$!
    fi
    if [[ "$s" == direct* ]] && [ -z "${wal0:-}" ]; then
        wal0=$(sql "SELECT pg_current_wal_lsn()"); msgs0=$(sql "SELECT count(*) FROM messages")
    fi
    # shellcheck disable=SC2086
    timeout 600 "$BENCH" $s $COMMON 2>&1 | tee -a "$OUT" || true
    if [[ "$s" == *direct-full* ]]; then
        wal=$(sql "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal0')::int8")
        msgs=$(( $(sql "SELECT count(*) FROM messages") - msgs0 ))
        PG_NOTE="PostgreSQL over the two direct runs: $msgs messages stored, $(( wal / msgs )) bytes of WAL per message"
    fi
    if [ -n "$sampler" ]; then
        kill -TERM "$sampler"; wait "$sampler" || true
        read -r peak_rss peak_subs <"$DIR/nats.peak"
        NATS_NOTE="NATS (3 servers, summed RSS): ${nats_before} KiB before, ${peak_rss} KiB at the peak: $(( (peak_rss - nats_before) * 1024 / IDLE )) bytes per connection; subscriptions on one server ${subs_before} -> ${peak_subs}. Nodes' CPU while the $IDLE connections idle (heartbeats): $(settle_cores) cores"
        echo "bench: $NATS_NOTE"
    fi
done

echo
echo "## $(date -u +%Y-%m-%dT%H:%MZ) — the cluster: $NODES nodes, 3 NATS servers, PostgreSQL, one machine"
echo
echo '```'
echo "CLUSTER_NODES=$NODES IYAGID_ARGS=\"--threads 1 --rate-limits off\" scripts/cluster.sh up DIR"
echo "iyagid admin create-users --data DIR/admin --store STORE_URL --count $IDLE --prefix cb --groups 20 --group-size 100 --out U"
for s in "${SUITE[@]}"; do echo "iyagi-bench $s --users U --port NODE1_PORT --server-pid PIDS --discovery"; done
echo '```'
grep '^{' "$OUT" || true
[ -z "$NATS_NOTE" ] || echo "$NATS_NOTE"
[ -z "$PG_NOTE" ] || echo "$PG_NOTE"
total=$(sql "SELECT count(*) FROM messages")
sql "CHECKPOINT" >/dev/null 2>&1 || true
echo "PostgreSQL on disk at the end, per stored message ($total in all): messages $(( $(relbytes messages) / total )) B," \
     "inbox $(( $(relbytes inbox) / total )) B, cmids $(( $(relbytes cmids) / total )) B (tables and their indexes)"
