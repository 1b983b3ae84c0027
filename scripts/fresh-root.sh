#!/usr/bin/env bash
# scripts/fresh-root.sh — proves README's set-up on a truly fresh Debian 12.
#
# Builds a minimal Debian 12 root with mmdebstrap (--variant=apt) from the
# same Debian suites this machine's apt uses, copies the repository's files
# in, and runs inside it, as root, exactly what README.md tells a user:
#
#   1. the prerequisite line (apt-get update; apt-get install -y make git)
#   2. `make run`  as a smoke test: it must serve /healthz and the web client
#                  at http://127.0.0.1:8080/ (then SIGINT, and it must exit 0)
#   3. `make cluster` (README, below them) as a smoke test: its web client
#                  URL serves the page and discovery lists 3 nodes; Ctrl-C stops it
#   4. `make test` the whole test command; its exit status is ours
#
# The commands are read from README.md itself (the first ```sh block), so the
# check cannot drift from what the README says. The root shares this
# machine's network (loopback ports, package registries); nothing of the
# host goes in but the repository and, where the host trusts extra
# certificate authorities for the registries, its CA bundle and npm's
# `cafile` setting. /proc, /sys, /dev, /dev/pts and /dev/shm are bind
# mounts, undone on every exit path before the root is deleted.
#
# Run by .ci/run: this is where CI runs README's test command (not by
# `make test`, which is what runs inside the root). Needs root. Environment: FRESH_ROOT_KEEP=1
# keeps the root directory for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

die() { echo "fresh-root: FAILED: $*" >&2; exit 1; }
log() { echo "fresh-root: $*"; }
[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap, chroot, mounts)"

if ! command -v mmdebstrap >/dev/null 2>&1; then
  log "installing mmdebstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi

# README's commands: the prerequisite line and the two commands, exactly as written.
block=$(awk '/^```sh$/{f=1;next} /^```$/{if(f)exit} f' README.md)
prereq=$(grep -m1 -E '^apt-get ' <<<"$block" || true)
run_cmd=$(grep -m1 -E '^make run$' <<<"$block" || true)
test_cmd=$(grep -m1 -E '^make test$' <<<"$block" || true)
[ -n "$prereq" ] && [ -n "$run_cmd" ] && [ -n "$test_cmd" ] ||
  die "README.md's first sh block must hold the apt-get prerequisite line, 'make run' and 'make test'"

# The Debian suites this machine uses, as one-line sources (origin Debian only:
# a third-party repository of the host, say one with a newer Node.js, stays out).
sources=$(LC_ALL=C apt-cache policy | awk '
  /^ *[0-9]+ (https?|file):/ { uri=$2; split($3, sc, "/"); suite=sc[1]; comp=sc[2]; next }
  /^ *release / && uri != "" { if ($0 ~ /o=Debian,/) print "deb " uri " " suite " " comp; uri="" }' | sort -u)
[ -n "$sources" ] || die "no Debian suites in 'apt-cache policy' (run apt-get update first)"

ROOT=$(mktemp -d /var/tmp/iyagi-fresh-root.XXXXXX)
mounts=()
run_pgid=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$run_pgid" ] && kill -0 -- "-$run_pgid" 2>/dev/null; then
    kill -INT -- "-$run_pgid"; sleep 3; kill -KILL -- "-$run_pgid" 2>/dev/null
  fi
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[$i]}" 2>/dev/null || umount -l "${mounts[$i]}"
  done
  if grep -qF " $ROOT/" /proc/mounts; then
    echo "fresh-root: mounts under $ROOT remain; not deleting it" >&2
    rc=1
  elif [ "${FRESH_ROOT_KEEP:-0}" = 1 ]; then
    log "kept $ROOT"
  else
    rm -rf --one-file-system "$ROOT"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
log "building a Debian 12 root in $ROOT from:"
echo "$sources" | sed 's/^/    /'
mmdebstrap --quiet --variant=apt --mode=root bookworm "$ROOT" - <<<"$sources" ||
  die "mmdebstrap could not build the root"
log "root built in $((SECONDS - t0)) s"

# Extra certificate authorities of the host (a registry behind an
# intercepting proxy): npm in the root trusts what npm on the host trusts.
ca=""
if command -v npm >/dev/null 2>&1; then ca=$(npm config get cafile 2>/dev/null || true); fi
case "$ca" in ""|null|undefined) ca="" ;; esac
if [ -n "$ca" ] && [ -f "$ca" ]; then
  install -D -m 0644 "$ca" "$ROOT/usr/local/share/iyagi-host-ca.pem"
  echo "cafile=/usr/local/share/iyagi-host-ca.pem" > "$ROOT/etc/npmrc"
  log "carried the host's npm cafile ($ca) into the root"
fi

# The root shares this machine's network: packages installed in it must not
# start their daemons (PostgreSQL on 5432, HAProxy, NATS) there. The usual
# chroot guard, as Debian's build tools use it: invoke-rc.d asks policy-rc.d.
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

for m in proc sys dev dev/pts dev/shm; do
  mkdir -p "$ROOT/$m"
  mount --bind "/$m" "$ROOT/$m"
  mounts+=("$ROOT/$m")
done

mkdir -p "$ROOT/root/iyagi"
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - -cf - | tar -xf - -C "$ROOT/root/iyagi"

inroot() {  # inroot COMMAND: a login-like shell in the repository, nothing of our environment
  chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive /bin/bash -c "cd /root/iyagi && $1"
}

# in_background COMMAND LOG: COMMAND in the root, in a session of its own (its
# process group id in run_pgid), as a user at a terminal would start it. A
# script without job control starts `&` commands with SIGINT ignored, and a
# shell cannot trap a signal that was ignored when it started: env restores
# the default, or cluster.sh's Ctrl-C trap would never run (CI hung on it).
in_background() {
  setsid chroot "$ROOT" /usr/bin/env --default-signal=INT -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    /bin/bash -c "cd /root/iyagi && exec $1" > "$2" 2>&1 &
  run_pgid=$!
}
# interrupt WHAT: Ctrl-C to what in_background started; its exit status once
# it ended. What has not ended 90 s later is killed and the check fails.
interrupt() {
  local rc=0 watchdog
  kill -INT -- "-$run_pgid"
  ( sleep 90; kill -KILL -- "-$run_pgid" ) >/dev/null 2>&1 &
  watchdog=$!
  wait "$run_pgid" || rc=$?
  kill "$watchdog" 2>/dev/null || true
  [ $rc -ne 137 ] || die "'$1' did not stop within 90 s of Ctrl-C (killed)"
  run_pgid=""
  return $rc
}

t=$SECONDS
log "\$ $prereq"
inroot "$prereq" > "$ROOT/prereq.log" 2>&1 || { tail -n 30 "$ROOT/prereq.log" >&2; die "README's prerequisite line failed: $prereq"; }
log "prerequisites: $((SECONDS - t)) s"

if curl -s -o /dev/null --max-time 2 http://127.0.0.1:8080/healthz; then
  die "something already listens on 127.0.0.1:8080; stop it and run again"
fi
t=$SECONDS
log "\$ $run_cmd   (waiting for http://127.0.0.1:8080/healthz)"
in_background "$run_cmd" "$ROOT/make-run.log"
up=0
for _ in $(seq 1 600); do
  kill -0 "$run_pgid" 2>/dev/null || break
  if curl -sf -o /dev/null --max-time 2 http://127.0.0.1:8080/healthz; then up=1; break; fi
  sleep 1
done
if [ $up -ne 1 ]; then
  tail -n 40 "$ROOT/make-run.log" >&2
  die "'$run_cmd' did not serve http://127.0.0.1:8080/healthz"
fi
log "'$run_cmd' served /healthz after $((SECONDS - t)) s"
page=$(curl -sf --max-time 5 http://127.0.0.1:8080/) || die "GET / failed"
grep -q '<html' <<<"$page" || die "GET / did not serve the web client"
rc=0; interrupt "$run_cmd" || rc=$?
# make passes SIGINT to iyagid, which stops cleanly; make itself then reports
# the interrupt, so iyagid's own last line is what tells a clean stop.
grep -q "stopped cleanly" "$ROOT/make-run.log" || { tail -n 20 "$ROOT/make-run.log" >&2; die "iyagid did not stop cleanly on SIGINT (make exited $rc)"; }
log "'$run_cmd' stopped cleanly on SIGINT"

# `make cluster` (README, below the two commands) from the same fresh root,
# before `make test` installed the cluster's servers: it must install what it
# needs, print the web client's URL (HAProxy), serve it with 3 nodes in
# discovery, and stop everything on Ctrl-C.
grep -qF '`make cluster`' README.md || die "README.md no longer documents 'make cluster'"
t=$SECONDS
log "\$ make cluster   (waiting for the web client's URL)"
in_background "make cluster" "$ROOT/make-cluster.log"
url=""
for _ in $(seq 1 600); do
  kill -0 "$run_pgid" 2>/dev/null || break
  url=$(sed -n 's|^  web client:  \(http://127\.0\.0\.1:[0-9]*\)/ .*|\1|p' "$ROOT/make-cluster.log")
  [ -z "$url" ] || break
  sleep 1
done
[ -n "$url" ] || { tail -n 40 "$ROOT/make-cluster.log" >&2; die "'make cluster' did not print the web client's URL"; }
curl -sf -o /dev/null --max-time 5 "$url/healthz" || die "'make cluster': GET $url/healthz failed"
page=$(curl -sf --max-time 5 "$url/") || die "'make cluster': GET $url/ failed"
grep -q '<html' <<<"$page" || die "'make cluster': $url/ did not serve the web client"
nodes=0
for _ in $(seq 1 30); do
  nodes=$(curl -sf --max-time 5 "$url/v1/discovery" | grep -o '"capacity"' | wc -l || true)
  [ "$nodes" -lt 3 ] || break
  sleep 1
done
[ "$nodes" -eq 3 ] || die "'make cluster': discovery at $url lists $nodes nodes, not 3"
log "'make cluster' served the web client at $url with 3 nodes after $((SECONDS - t)) s"
interrupt "make cluster" || true
grep -q "cluster: stopped;" "$ROOT/make-cluster.log" || { tail -n 20 "$ROOT/make-cluster.log" >&2; die "'make cluster' did not stop on Ctrl-C"; }
! curl -s -o /dev/null --max-time 2 "$url/healthz" || die "'make cluster': $url still answers after Ctrl-C"
log "'make cluster' stopped on Ctrl-C"

t=$SECONDS
log "\$ $test_cmd"
inroot "$test_cmd" || die "README's test command '$test_cmd' failed in the fresh root after $((SECONDS - t)) s"
log "'$test_cmd' passed in $((SECONDS - t)) s"
log "all of README's commands work on a fresh Debian 12 root ($((SECONDS - t0)) s in all)"
