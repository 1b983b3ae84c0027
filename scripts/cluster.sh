#!/usr/bin/env bash
# scripts/cluster.sh — a whole iyagi cluster on this machine, on 127.0.0.1.
#
#   cluster.sh up DIR     start it, state in DIR (created): 3 nats-server forming one
#                         cluster, a throwaway PostgreSQL, 3 iyagid nodes on it, and
#                         HAProxy in front; writes DIR/cluster.env and prints the URLs
#   cluster.sh down DIR   stop everything DIR/cluster.env names (by PID), remove DIR
#   cluster.sh run        up in a new temporary directory, wait for Ctrl-C (SIGINT),
#                         SIGTERM or SIGHUP, then down: what `make cluster` runs
#
#   HAProxy :H ──round-robin, GET /healthz──► iyagid n1 :P1  n2 :P2  n3 :P3
#                                                │ --store        │ --bus
#                                        PostgreSQL :Q     nats1 ◄─routes─► nats2 ◄─► nats3
#
# Browsers load the web client from HAProxy; login's ws_url then names one node
# (discovery) and the WebSocket goes to that node directly.
#
# Environment: IYAGID (default build/rel/iyagid), CLUSTER_NODES (3), CLUSTER_NATS (3),
# CLUSTER_HTTP_PORT (HAProxy's port; default a free one), CLUSTER_CAPACITY (each
# node's --capacity; default iyagid's own), IYAGID_ARGS (more flags for every node,
# e.g. "--threads 1 --rate-limits off").
#
# Every port is one nobody listens on, picked below the kernel's ephemeral range
# so that outgoing connections cannot take it meanwhile. Each server runs in its
# own session (setsid): Ctrl-C reaches this script only, which stops them in
# order (HAProxy, the nodes — draining while NATS is still there — NATS, then
# PostgreSQL). DIR/cluster.env is written as things start, so `down` also cleans
# up after a start that failed half-way or a script that was killed.
# The templates are deploy/nats-cluster.conf.in and deploy/haproxy.cfg.in.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IYAGID=${IYAGID:-$ROOT/build/rel/iyagid}
PG=$ROOT/scripts/pg-throwaway.sh
NODES=${CLUSTER_NODES:-3}
NATS=${CLUSTER_NATS:-3}

say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 1; }

# ---- small tools (no curl: a fresh Debian has none)

# Replaces @KEY@ by VALUE (args KEY=VALUE...) in every line of template $1 that is
# not a comment, into $2; a placeholder left without a value is an error.
render() {
  local tpl=$1 out=$2 line kv
  shift 2
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ ! "$line" =~ ^[[:space:]]*# ]]; then
      for kv in "$@"; do line=${line//"@${kv%%=*}@"/"${kv#*=}"}; done
      [[ ! "$line" =~ @[A-Z_]+@ ]] || die "$tpl: no value for ${BASH_REMATCH[0]}"
    fi
    printf '%s\n' "$line"
  done <"$tpl" >"$out"
}

# GET http://127.0.0.1:$2$3 (2 s at most); $1 = status: print the status code,
# body: print the body.
http_get() {
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$2" || exit 1
    printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$3" >&3
    IFS=" " read -r _ code _ <&3 || exit 1
    if [ "$1" = status ]; then echo "$code"; else sed "1,/^\r\{0,1\}\$/d" <&3; fi' _ "$@" 2>/dev/null
}

PORTS_TAKEN=" "
# Records as $1 a port nobody listens on and not handed out before by this script.
port_set() {
  local p
  for _ in $(seq 1 500); do
    p=$((20000 + RANDOM % 12000))
    [[ "$PORTS_TAKEN" != *" $p "* ]] || continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      PORTS_TAKEN+="$p "
      env_set "$1" "$p"
      return 0
    fi
  done
  die "no free port found"
}

env_set() { echo "$1=$2" >>"$DIR/cluster.env"; }
env_get() { sed -n "s/^$1=//p" "$DIR/cluster.env" | tail -n 1; }

# True while PID is a live process of this cluster (its command line names DIR);
# a zombie or a reused PID is not.
ours() {
  [ -n "$1" ] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$DIR/"
}

# Starts "$@" in its own session, output to log $2; records the PID as $1.
start_bg() {
  local key=$1 log=$2
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  env_set "$key" $!
  disown $!   # no "Killed" job notices from bash when one dies
}

# Waits up to $1 s for "${@:3}" to succeed while PID $2 lives; dies with the log otherwise.
wait_for() {
  local secs=$1 pid=$2 what=$3 log=$4
  shift 4
  local deadline=$((SECONDS + secs))
  until "$@"; do
    ours "$pid" || die "$what exited while starting; $log ends with:
$(tail -n 20 "$log")"
    [ $SECONDS -lt $deadline ] || die "$what not ready within $secs s; $log ends with:
$(tail -n 20 "$log")"
    sleep 0.2
  done
}

routes_up() { [ "$(http_get body "$1" /routez | grep -o '"num_routes": [0-9]*' | grep -o '[0-9]*$')" -ge $((NATS - 1)) ] 2>/dev/null; }
healthy() { [ "$(http_get status "$1" /healthz)" = 200 ]; }

# ---- up

up() {
  [[ "$DIR" =~ ^[A-Za-z0-9_./+-]+$ ]] || die "DIR may hold only letters, digits and _ . / + -: $DIR"
  [ ! -e "$DIR/cluster.env" ] || die "$DIR holds a cluster already (cluster.sh down $DIR)"
  [ -x "$IYAGID" ] || die "no iyagid at $IYAGID: run make"
  command -v nats-server >/dev/null || die "no nats-server: scripts/deps.sh cluster"
  command -v haproxy >/dev/null || die "no haproxy: scripts/deps.sh cluster"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  chmod 755 "$DIR"   # the postgres user must reach $DIR/pg
  : >"$DIR/cluster.env"
  env_set CLUSTER_DIR "$DIR"
  env_set NODES "$NODES"
  env_set NATS "$NATS"

  # Ports first: every route list and --bus names all of them.
  local i routes="" bus=""
  for i in $(seq 1 "$NATS"); do
    port_set "NATS${i}_PORT"
    port_set "NATS${i}_CLUSTER_PORT"
    port_set "NATS${i}_HTTP_PORT"
    routes+="${routes:+, }nats-route://127.0.0.1:$(env_get "NATS${i}_CLUSTER_PORT")"
    bus+="${bus:+,}nats://127.0.0.1:$(env_get "NATS${i}_PORT")"
  done
  env_set NATS_URLS "$bus"
  for i in $(seq 1 "$NODES"); do
    env_set "NODE${i}_NAME" "n$i"
    port_set "NODE${i}_PORT"
    env_set "NODE${i}_URL" "http://127.0.0.1:$(env_get "NODE${i}_PORT")"
  done
  if [ -n "${CLUSTER_HTTP_PORT:-}" ]; then env_set HAPROXY_PORT "$CLUSTER_HTTP_PORT"; else port_set HAPROXY_PORT; fi
  env_set HTTP_URL "http://127.0.0.1:$(env_get HAPROXY_PORT)"

  say "starting $NATS NATS servers"
  for i in $(seq 1 "$NATS"); do
    mkdir -p "$DIR/nats$i"
    render "$ROOT/deploy/nats-cluster.conf.in" "$DIR/nats$i/nats.conf" NAME="nats$i" HOST=127.0.0.1 \
      CLIENT_PORT="$(env_get "NATS${i}_PORT")" CLUSTER_PORT="$(env_get "NATS${i}_CLUSTER_PORT")" \
      HTTP_PORT="$(env_get "NATS${i}_HTTP_PORT")" ROUTES="$routes"
    start_bg "NATS${i}_PID" "$DIR/nats$i/log" nats-server -c "$DIR/nats$i/nats.conf"
  done

  say "starting PostgreSQL"
  env_set PG_DIR "$DIR/pg"
  "$PG" start "$DIR/pg" >/dev/null
  local store
  store=$("$PG" createdb "$DIR/pg" iyagi)
  env_set STORE_URL "$store"

  for i in $(seq 1 "$NATS"); do
    wait_for 20 "$(env_get "NATS${i}_PID")" "nats$i" "$DIR/nats$i/log" routes_up "$(env_get "NATS${i}_HTTP_PORT")"
  done
  say "NATS cluster formed ($bus)"

  say "starting $NODES iyagid nodes"
  local -a extra=()
  [ -z "${CLUSTER_CAPACITY:-}" ] || extra+=(--capacity "$CLUSTER_CAPACITY")
  # shellcheck disable=SC2206 # IYAGID_ARGS is a list of flags, split on spaces on purpose
  [ -z "${IYAGID_ARGS:-}" ] || extra+=($IYAGID_ARGS)
  for i in $(seq 1 "$NODES"); do
    mkdir -p "$DIR/n$i/data"
    start_bg "NODE${i}_PID" "$DIR/n$i/log" "$IYAGID" --listen "127.0.0.1:$(env_get "NODE${i}_PORT")" \
      --data "$DIR/n$i/data" --store "$store" --bus "$bus" --node "n$i" \
      --public-url "$(env_get "NODE${i}_URL")" --trust-proxy 127.0.0.1/32 ${extra[@]+"${extra[@]}"}
  done
  for i in $(seq 1 "$NODES"); do
    wait_for 30 "$(env_get "NODE${i}_PID")" "iyagid n$i" "$DIR/n$i/log" healthy "$(env_get "NODE${i}_PORT")"
  done

  say "starting HAProxy"
  local servers=""
  for i in $(seq 1 "$NODES"); do
    servers+="${servers:+$'\n'}    server n$i 127.0.0.1:$(env_get "NODE${i}_PORT")"
  done
  render "$ROOT/deploy/haproxy.cfg.in" "$DIR/haproxy.cfg" BIND="127.0.0.1:$(env_get HAPROXY_PORT)" SERVERS="$servers"
  haproxy -c -f "$DIR/haproxy.cfg" >/dev/null || die "haproxy refuses $DIR/haproxy.cfg (haproxy -c -f $DIR/haproxy.cfg)"
  mkdir -p "$DIR/haproxy"
  start_bg HAPROXY_PID "$DIR/haproxy/log" haproxy -db -f "$DIR/haproxy.cfg"
  wait_for 10 "$(env_get HAPROXY_PID)" "haproxy" "$DIR/haproxy/log" healthy "$(env_get HAPROXY_PORT)"
}

print_urls() {
  local i
  echo
  echo "iyagi cluster up, state in $DIR (cluster.env: every port, URL and PID)"
  echo "  web client:  $(env_get HTTP_URL)/   (HAProxy, round-robin over the nodes)"
  for i in $(seq 1 "$(env_get NODES)"); do
    echo "  node n$i:     $(env_get "NODE${i}_URL")/   WebSocket ws://127.0.0.1:$(env_get "NODE${i}_PORT")/v1/ws   log $DIR/n$i/log"
  done
  echo "  NATS:        $(env_get NATS_URLS)"
  echo "  PostgreSQL:  $(env_get STORE_URL)"
}

# ---- down

# SIGTERM to every PID given (those still ours), SIGKILL to what is left after $1 s.
stop_pids() {
  local secs=$1 pid left
  shift
  for pid in "$@"; do ! ours "$pid" || kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + secs))
  while :; do
    left=()
    for pid in "$@"; do ! ours "$pid" || left+=("$pid"); done
    [ ${#left[@]} -gt 0 ] || break
    if [ $SECONDS -ge $deadline ]; then
      say "still running after ${secs} s, killed: ${left[*]}"
      kill -KILL "${left[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
}

down() {
  [ -f "$DIR/cluster.env" ] || die "$DIR/cluster.env not found: not a cluster of cluster.sh"
  DIR=$(cd "$DIR" && pwd)
  local i nodes=() nats=()
  for i in $(seq 1 "$(env_get NODES)"); do nodes+=("$(env_get "NODE${i}_PID")"); done
  for i in $(seq 1 "$(env_get NATS)"); do nats+=("$(env_get "NATS${i}_PID")"); done
  stop_pids 5 "$(env_get HAPROXY_PID)"
  stop_pids 30 "${nodes[@]}"    # they drain: finish what they accepted, close sockets with 1012
  stop_pids 10 "${nats[@]}"
  [ ! -d "$DIR/pg" ] || "$PG" stop "$DIR/pg" || say "PostgreSQL in $DIR/pg did not stop cleanly"
  rm -rf "$DIR"
  say "stopped; $DIR removed"
}

up_failed() {
  [ -f "$DIR/cluster.env" ] || return 0
  trap "" INT TERM HUP
  say "start failed; stopping what was started"
  down
}

# ---- run

run_cleanup() {
  trap "" INT TERM HUP
  echo
  if [ -f "$DIR/cluster.env" ]; then say "stopping"; down; else rm -rf "$DIR"; fi
}

run() {
  DIR=$(mktemp -d /tmp/iyagi-cluster.XXXXXX)
  # Whatever ends this script (Ctrl-C, SIGTERM, a failed start, an error) stops the cluster.
  trap run_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  up
  print_urls
  echo
  echo "Ctrl-C stops the cluster. Kill a node (kill -9 PID, see $DIR/cluster.env) to watch failover."
  local i pid dead=" "
  while :; do
    # `wait` on a background sleep: a signal interrupts it at once.
    sleep 1 &
    wait $! || true
    for i in $(seq 1 "$NODES"); do
      pid=$(env_get "NODE${i}_PID")
      if [[ "$dead" != *" $pid "* ]] && ! ours "$pid"; then
        dead+="$pid "
        say "node n$i (pid $pid) exited; its log: $DIR/n$i/log"
      fi
    done
  done
}

case "${1:-}" in
  up)
    [ -n "${2:-}" ] || die "usage: $0 up DIR"
    DIR=$2
    # A start that fails half-way stops what it started (and removes DIR).
    trap 'up_failed' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    up
    trap - EXIT
    print_urls
    echo "  stop it:     $0 down $DIR"
    ;;
  down)
    [ -n "${2:-}" ] || die "usage: $0 down DIR"
    DIR=$2
    down
    ;;
  run) run ;;
  *) echo "usage: $0 up DIR | down DIR | run" >&2; exit 2 ;;
esac
