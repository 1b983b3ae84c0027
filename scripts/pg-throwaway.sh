#!/usr/bin/env bash
# scripts/pg-throwaway.sh — a throwaway PostgreSQL 15 for tests and benchmarks.
#
#   pg-throwaway.sh start DIR          initdb in DIR, start on a free 127.0.0.1 port,
#                                      print postgresql://postgres@127.0.0.1:PORT/postgres
#   pg-throwaway.sh createdb DIR NAME  a fresh database NAME; prints its URL
#   pg-throwaway.sh down DIR           stop the server, keep DIR (a restart test)
#   pg-throwaway.sh up DIR             start it again on the same port
#   pg-throwaway.sh stop DIR           stop the server and delete DIR
#
# Debian's PostgreSQL 15 binaries (/usr/lib/postgresql/15/bin, package
# `postgresql`; PGBIN overrides). Never the system cluster on 5432: the
# server listens on 127.0.0.1 only, on a port chosen here, with its Unix
# socket in DIR. PostgreSQL refuses to run as root, so as root DIR is
# chowned to the `postgres` user (created by the package) and every server
# command runs through `runuser -u postgres --`; DIR's parent directories
# must then be traversable by that user (mktemp -d under /tmp is).
#
# Settings: fsync and synchronous_commit stay on (the durability tests kill
# servers and count what was acknowledged); trust authentication on
# loopback only; initdb itself skips its sync (an initial cluster lost in a
# machine crash is simply made again). DIR holds data/ (the cluster),
# port, and log (the server log, kept until stop: read it when a test fails).
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:-}
dir=${2:-}

die() { echo "pg-throwaway: $*" >&2; exit 1; }
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|createdb|down|up|stop DIR [NAME]"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL 15 in $PGBIN: apt-get install postgresql (scripts/deps.sh test)"

# DIR as an absolute path: as_pg runs from / (the postgres user may not
# enter the caller's directory, say /root/iyagi, and would warn on every call).
if [ -d "$dir" ]; then dir=$(cd "$dir" && pwd); fi

# Runs a server command as the owner of the cluster.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@")
  else "$@"
  fi
}

# A TCP port nobody listens on now (the server's own bind is the real test:
# start retries on another port if it lost a race).
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

# Starts the cluster in $dir on port $1: 0 once it accepts connections.
pg_start() {
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 -s \
    -o "-p $1 -k $dir" start >/dev/null
}

url() { echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/${1:-postgres}"; }

case "$cmd" in
  start)
    [ ! -e "$dir/data" ] || die "$dir/data exists already"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" -eq 0 ]; then
      id postgres >/dev/null 2>&1 || die "no postgres user (apt-get install postgresql)"
      chown postgres: "$dir"
      runuser -u postgres -- test -w "$dir" ||
        die "the postgres user cannot reach $dir: pass a directory whose parents it may traverse (DIR=\$(mktemp -d) is fine)"
    fi
    as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    cat >>"$dir/data/postgresql.conf" <<EOF
# pg-throwaway.sh
listen_addresses = '127.0.0.1'
fsync = on
synchronous_commit = on
max_connections = 200
shared_buffers = 256MB
max_wal_size = 2GB
log_min_messages = warning
log_min_error_statement = panic
EOF
    for _ in 1 2 3 4 5; do
      port=$(free_port)
      if pg_start "$port"; then
        echo "$port" >"$dir/port"
        url
        exit 0
      fi
      # The port was taken meanwhile (or another failure: the log says).
    done
    cat "$dir/log" >&2 || true
    die "the server did not start"
    ;;
  createdb)
    name=${3:-}
    [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || die "createdb: NAME must match [a-z_][a-z0-9_]*"
    [ -f "$dir/port" ] || die "no server in $dir"
    as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$(cat "$dir/port")" -U postgres "$name"
    url "$name"
    ;;
  down)
    [ -f "$dir/port" ] || die "no server in $dir"
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -s stop >/dev/null
    ;;
  up)
    [ -f "$dir/port" ] || die "no server in $dir"
    pg_start "$(cat "$dir/port")" || { tail -n 20 "$dir/log" >&2; die "the server did not start"; }
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -s stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    die "unknown command $cmd (start|createdb|down|up|stop)"
    ;;
esac
