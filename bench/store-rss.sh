#!/usr/bin/env bash
# bench/store-rss.sh — memory by store size (issue 15, item 4): the server's
# RSS at idle and with 15,000 idle authenticated connections on a store with
# history, at start (the search indexer working through the history the
# store was made with) and again on a new server once the indexer has
# caught up (as on a server that has run for a while).
#
#   bench/store-rss.sh DATA_DIR USERS_FILE [IYAGID ARGS...]
#
# DATA_DIR: a store made with
#   iyagid admin create-users --data DIR --count 15000 --prefix u --out USERS
#          --groups 7500 --group-size 2 --messages N
# It is used in place (the server indexes it and adds sessions): copy it
# first to keep a pristine one. IYAGID ARGS go to the server (say
# --cache-mb 16). Environment: IYAGID (default build/rel/iyagid), BENCH
# (build/rel/iyagi-bench), PORT (a free one), CATCHUP_MAX (seconds to wait for
# the indexer, default 3600).
#
# The server's log goes to a temporary file, removed after a complete run.
# Prints one line per measurement:
#   PHASE rss=KB cache=BYTES memtables=BYTES indexed=N [bench's idle line]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: bench/store-rss.sh DATA_DIR USERS_FILE [IYAGID ARGS...]}
USERS=${2:?usage: bench/store-rss.sh DATA_DIR USERS_FILE [IYAGID ARGS...]}
shift 2
IYAGID=${IYAGID:-build/rel/iyagid}
BENCH=${BENCH:-build/rel/iyagi-bench}
CATCHUP_MAX=${CATCHUP_MAX:-3600}
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
LOG=$(mktemp /tmp/iyagi-store-rss.XXXXXX.log)

SPID=""
start() {
    "$IYAGID" --listen 127.0.0.1:$PORT --data "$DATA" --threads 2 --rate-limits off "$@" >>"$LOG" 2>&1 &
    SPID=$!
    for _ in $(seq 600); do
        curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
        kill -0 $SPID 2>/dev/null || { cat "$LOG"; exit 1; }
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "store-rss: the server did not start"; cat "$LOG"; exit 1; }
}
stop() {
    if [ -n "$SPID" ] && kill -INT $SPID 2>/dev/null; then wait $SPID || true; fi
    SPID=""
}
trap stop EXIT

gauge() {  # gauge NAME: a value of /metrics
    curl -fs "http://127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n { v = $2 } END { print v }'
}
memtables() {
    curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^iyagi_rocksdb_memtable/ && !/^#/ { s += $2 } END { printf "%.0f", s }'
}
show() {  # show PHASE [TEXT]
    echo "$1 rss=$(awk '/^VmRSS/ { print $2 }' /proc/$SPID/status)KB" \
         "cache=$(gauge iyagi_rocksdb_block_cache_bytes) memtables=$(memtables)" \
         "indexed=$(gauge iyagi_search_indexed_total)${2:+ $2}"
}
idle() {  # idle PHASE: 15,000 idle connections, RSS after
    local out
    out=$("$BENCH" idle --count 15000 --settle 6 --users "$USERS" --port $PORT --server-pid $SPID --workers 2 2>&1 |
          grep -E 'conn/s|bytes per connection' | tr '\n' ' ')
    show "$1" "| $out"
}
# caught_up: the indexer's count has not moved for 3 s (it looks every 250 ms
# once it has nothing to do).
caught_up() {
    local prev="" cur t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$CATCHUP_MAX" ]; do
        cur=$(gauge iyagi_search_indexed_total)
        [ "$cur" != "$prev" ] || return 0
        prev=$cur
        sleep 3
    done
    echo "store-rss: the indexer had not caught up after $CATCHUP_MAX s"
    return 1
}

# At start, with the indexer's backlog (a store just made); then a new
# server on the same store once its index is whole (a server that has run).
start "$@"
sleep 4
show "start-idle"
idle "start-15k"
t0=$SECONDS
caught_up
echo "store-rss: the indexer caught up $((SECONDS - t0)) s later; restarting"
stop
start "$@"
sleep 4
show "caught-up-idle"
idle "caught-up-15k"
stop
rm -f "$LOG"   # kept (and printed) only when the server failed to start
