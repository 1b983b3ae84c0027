#!/usr/bin/env bash
# nspawn.test.sh — the package under a real systemd: boots a minimal Debian 12
# root (mmdebstrap) with systemd-nspawn, installs the .deb there, and checks
# the unit as systemd runs it: started on install, the sandbox in force
# (user iyagi, no capabilities, no_new_privs, seccomp, MemoryDenyWriteExecute,
# /var/lib/iyagi from StateDirectory=), the smoke test (a message, the
# history, an upload with its libvips thumbnail), `systemctl stop` a clean
# drain (Result=success, exit 0), a restart keeping the data, a port below
# 1024 with the drop-in the unit's comment gives, the store in PostgreSQL
# over its Unix socket (peer authentication through PrivateUsers), and purge;
# then tests/pkg/deb.test.sh in there, which takes its systemd branch.
#
# Not a `make test` step: it downloads a root and the package's dependencies
# (~150 MB of packages, about a minute) and needs systemd-nspawn (Debian's systemd-container) and
# mmdebstrap; tests/pkg/deb.test.sh is the everyday test and takes this
# same path (its systemd branch) where systemd is PID 1. Run as root:
#
#   tests/pkg/nspawn.test.sh            (NSPAWN_ROOT=DIR: build the root there once, keep
#                                        it, and reuse it on the next runs)
#
# The container shares this machine's network (the server listens on a free
# 127.0.0.1 port) and sees the repository read-only at /repo (smoke.mjs and
# tests/e2e's npm ws). It powers itself off when the check ends.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

say() { echo "nspawn.test: $*"; }
fail() { echo "nspawn.test: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root"
command -v systemd-nspawn >/dev/null || fail "no systemd-nspawn: apt-get install systemd-container"
command -v mmdebstrap >/dev/null || fail "no mmdebstrap: apt-get install mmdebstrap"
[ -d tests/e2e/node_modules/ws ] || fail "tests/e2e/node_modules: run npm ci there (scripts/deps.sh test)"

tmp=$(mktemp -d /tmp/iyagi-nspawn.XXXXXX)
own_root=0
root=${NSPAWN_ROOT:-}
cleanup() {
  [ "$own_root" = 0 ] || rm -rf --one-file-system "$root"
  rm -rf "$tmp"
}
trap cleanup EXIT

deb=$(scripts/build-deb.sh "$tmp/out" | tail -n 1)
if [ -z "$root" ] || [ ! -x "$root/usr/bin/systemctl" ]; then
  if [ -z "$root" ]; then root=$(mktemp -d /var/tmp/iyagi-nspawn-root.XXXXXX); own_root=1; fi
  # Only what the test itself needs: apt resolves the package's Depends in there.
  say "building a Debian 12 root with systemd in $root"
  mmdebstrap --quiet --variant=minbase --mode=root \
    --include="systemd,systemd-sysv,dbus,curl,nodejs" bookworm "$root" - <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
fi
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
# A free port below 1024, for the drop-in the unit's comment gives for one.
low_port=$(node -e '
  const net = require("net");
  (function next(p) {
    if (p > 999) process.exit(1);
    const s = net.createServer().once("error", () => next(p + 1)).listen(p, "127.0.0.1", () => { console.log(p); s.close(); });
  })(900);') || fail "no free port from 900 to 999"
cp "$deb" "$root/root/iyagi.deb"
mkdir -p "$tmp/results"

# What runs inside, once the container has booted.
cat > "$root/root/check.sh" <<EOF
#!/bin/bash
set -uo pipefail
port=$port
low_port=$low_port
EOF
cat >> "$root/root/check.sh" <<'EOF'
exec >/results/log 2>&1
fail() { echo "FAIL: $*"; journalctl -u iyagid --no-pager | tail -n 30; echo fail > /results/result; systemctl poweroff; exit 1; }
base=http://127.0.0.1:$port
healthy() { for _ in $(seq 150); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" = 200 ] && return 0; sleep 0.1; done; return 1; }

# A root used before (NSPAWN_ROOT) may hold a failed run's package.
dpkg --purge iyagi >/dev/null 2>&1 || true
rm -rf /var/backups/iyagi
# The port moved by a drop-in before the package starts the unit.
mkdir -p /etc/systemd/system/iyagid.service.d
printf '[Service]\nEnvironment=IYAGI_LISTEN=127.0.0.1:%s\nEnvironment=IYAGI_ACCESS_LOG=/var/log/iyagi/access.log\n' "$port" \
  > /etc/systemd/system/iyagid.service.d/50-test.conf
# apt-get, from a minimal system: the Depends must be complete (and Recommends brings libvips42).
apt-get update -qq || fail "apt-get update"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/iyagi.deb || fail "apt-get install"
systemctl is-enabled iyagid.service | grep -qx enabled || fail "not enabled"
healthy || fail "postinst did not start the unit (no /healthz 200 on $base)"
pid=$(systemctl show -P MainPID iyagid.service)
st=/proc/$pid/status
echo "MainPID $pid: $(grep -E '^(Uid|NoNewPrivs|Seccomp|CapEff|CapBnd):' "$st" | tr '\n\t' '  ')"
[ "$(awk '/^Uid:/ {print $2}' "$st")" = "$(id -u iyagi)" ] || fail "not running as iyagi"
grep -q '^NoNewPrivs:[[:space:]]*1' "$st" || fail "no no_new_privs"
grep -q '^Seccomp:[[:space:]]*2' "$st" || fail "no seccomp filter"
grep -q '^CapEff:[[:space:]]*0000000000000000' "$st" || fail "has capabilities"
grep -q '^CapBnd:[[:space:]]*0000000000000000' "$st" || fail "has a capability bounding set"
[ "$(stat -c '%U %a' /var/lib/iyagi)" = "iyagi 700" ] || fail "/var/lib/iyagi is $(stat -c '%U %a' /var/lib/iyagi)"
(cd /repo/tests/pkg && node smoke.mjs first "$base" /results/smoke.json) || fail "smoke first"
# systemctl reload (SIGHUP) reloads the TLS certificate, reopens the access log (the drop-in
# sends it to /var/log/iyagi: LogsDirectory=) and must not stop the node.
mv /var/log/iyagi/access.log /var/log/iyagi/access.log.1 || fail "no access log in /var/log/iyagi"
systemctl reload iyagid.service || fail "systemctl reload"
sleep 0.5
[ "$(systemctl show -P MainPID iyagid.service)" = "$pid" ] && healthy || fail "the node did not survive systemctl reload"
[ -s /var/log/iyagi/access.log ] || fail "SIGHUP did not reopen the access log"
journalctl -u iyagid --no-pager | grep -q 'access log reopened' || fail "no 'access log reopened' in the journal"
# An online backup, as OPERATIONS.md says to take it: the server writes it, and under
# ProtectSystem=strict it may write /var/backups/iyagi (ReadWritePaths=).
runuser -u iyagi -- iyagid admin backup --data /var/lib/iyagi /var/backups/iyagi/b1 || fail "admin backup"
[ -f /var/backups/iyagi/b1/manifest ] || fail "no manifest in the backup"
systemctl stop iyagid.service
[ "$(systemctl show -P Result iyagid.service)" = success ] || fail "stop: Result=$(systemctl show -P Result iyagid.service)"
[ "$(systemctl show -P ExecMainStatus iyagid.service)" = 0 ] || fail "stop: exit $(systemctl show -P ExecMainStatus iyagid.service)"
journalctl -u iyagid --no-pager | grep -q 'stopped cleanly' || fail "no 'stopped cleanly' in the journal"
systemctl start iyagid.service
healthy || fail "no restart"
(cd /repo/tests/pkg && node smoke.mjs again "$base" /results/smoke.json) || fail "smoke again"
systemctl stop iyagid.service
# A port below 1024 with the drop-in iyagid.service's comment gives.
printf '[Service]\nEnvironment=IYAGI_LISTEN=127.0.0.1:%s\nAmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\nPrivateUsers=no\n' \
  "$low_port" > /etc/systemd/system/iyagid.service.d/50-test.conf
systemctl daemon-reload
systemctl start iyagid.service
base=http://127.0.0.1:$low_port
healthy || fail "no /healthz 200 on port $low_port with the low-port drop-in"
systemctl stop iyagid.service

# The store in PostgreSQL over its Unix socket with peer authentication (OS user iyagi, role
# iyagi), through the sandbox: AF_UNIX allowed, /run/postgresql readable under
# ProtectSystem=strict, the uid right through PrivateUsers. PostgreSQL listens on no TCP port
# (the container shares the host's network).
if [ ! -d /etc/postgresql/15/main ]; then
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 >/dev/null || fail "apt-get install postgresql-15"
  pg_createcluster 15 main -o "listen_addresses=" >/dev/null || fail "pg_createcluster"
fi
pg_ctlcluster 15 main start 2>/dev/null || true
runuser -u postgres -- psql -qc "CREATE ROLE iyagi LOGIN" 2>/dev/null || true
runuser -u postgres -- psql -qc "DROP DATABASE IF EXISTS iyagi" && runuser -u postgres -- psql -qc "CREATE DATABASE iyagi OWNER iyagi" || fail "createdb"
printf '[Service]\nEnvironment=IYAGI_LISTEN=127.0.0.1:%s\nEnvironment=IYAGI_STORE=postgresql:///iyagi?host=/run/postgresql\n' "$port" \
  > /etc/systemd/system/iyagid.service.d/50-test.conf
systemctl daemon-reload
systemctl start iyagid.service
base=http://127.0.0.1:$port
healthy || fail "no /healthz 200 on the PostgreSQL store"
line=$(journalctl -u iyagid --no-pager | grep 'iyagid listening' | tail -n 1)
echo "$line"
grep -q 'postgres' <<<"$line" || fail "the server did not say it uses PostgreSQL"
(cd /repo/tests/pkg && node smoke.mjs first "$base" /results/smoke-pg.json) || fail "smoke on PostgreSQL"
systemctl stop iyagid.service
[ "$(systemctl show -P Result iyagid.service)" = success ] || fail "stop on PostgreSQL: Result=$(systemctl show -P Result iyagid.service)"
pg_ctlcluster 15 main stop

dpkg --purge iyagi || fail "purge"
[ ! -e /var/lib/iyagi ] || fail "purge left /var/lib/iyagi"
! getent passwd iyagi || fail "purge left the user"

# The backup outlived the purge, as it should; gone now, by hand.
[ -f /var/backups/iyagi/b1/manifest ] || fail "purge deleted a backup"
rm -rf /var/backups/iyagi

# And the everyday test, on its systemd branch (here systemd is PID 1), with its own port.
rm -rf /etc/systemd/system/iyagid.service.d
IYAGI_DEB=/root/iyagi.deb /repo/tests/pkg/deb.test.sh || fail "deb.test.sh under systemd"
echo ok > /results/result
systemctl poweroff
EOF
chmod 755 "$root/root/check.sh"
cat > "$root/etc/systemd/system/iyagi-check.service" <<'EOF'
[Unit]
Description=tests/pkg/nspawn.test.sh's check
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/root/check.sh
[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/iyagi-check.service "$root/etc/systemd/system/multi-user.target.wants/iyagi-check.service"
rm -rf "$root/etc/systemd/system/iyagid.service.d" "$root/var/lib/iyagi"

say "booting it (systemd-nspawn), the server on 127.0.0.1:$port"
rc=0
timeout 300 systemd-nspawn --quiet --register=no --keep-unit --directory="$root" --bind-ro="$REPO:/repo" \
  --bind="$tmp/results:/results" --boot >"$tmp/console.log" 2>&1 </dev/null || rc=$?
cat "$tmp/results/log" 2>/dev/null || true
if [ "$(cat "$tmp/results/result" 2>/dev/null)" != ok ]; then
  tail -n 30 "$tmp/console.log" >&2
  fail "the check inside the container (nspawn exit $rc)"
fi
say "ok"
