#!/usr/bin/env bash
# deb.test.sh — the Debian package, installed for real on this machine (issue 14).
#
# Builds it (scripts/build-deb.sh; lintian, where installed, must find no error),
# installs it with apt-get (which resolves
# its Depends), checks what dpkg installed (files, the conffile, the iyagi
# system user, /var/lib/iyagi 0700, the unit enabled, systemd-analyze verify
# and security), then runs the installed server the way the unit would:
#   - under systemd (PID 1): systemctl start, with the port moved by a drop-in;
#   - otherwise (containers, CI): the unit's ExecStart, /usr/bin/iyagid --config
#     /etc/iyagi/iyagid.conf, as the iyagi user with no capabilities, no_new_privs and, where the kernel
#     has it (prctl PR_SET_MDWE, Linux >= 6.3), no writable+executable memory
#     (what MemoryDenyWriteExecute=yes enforces), on a free loopback port
#     (IYAGI_LISTEN), with its data in /var/lib/iyagi.
# Smoke test (smoke.mjs): /healthz, two users, a message over the WebSocket,
# the history, an upload with its thumbnail; SIGTERM exits 0. Then the
# failure modes: the unprivileged user cannot write outside its directories,
# configuration mistakes exit 2 (the unit does not restart on 2), a reinstall keeps an
# edited conffile and the data, `dpkg -r` keeps the data, the user and the
# configuration, `dpkg --purge` removes them all but a file the admin left in
# /etc/iyagi.
#
# Needs root (CI runs as root on a throwaway machine); refuses to touch an
# iyagi package or user that this test did not install. Cleans up whatever
# happens (the trap purges the package), so it can run again at once.
#
#   sudo tests/pkg/deb.test.sh        (after `make deps`: node and tests/e2e's npm ws)
#   IYAGI_DEB=FILE                    test that package instead of building one
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "deb.test: $*"; }
fail() { echo "deb.test: FAIL: $*" >&2; [ ! -s "${tmp:-/nonexistent}/server.log" ] || tail -n 20 "$tmp/server.log" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  say "skipped: needs root (it installs and purges the package)"
  exit 0
fi

MARK=/var/tmp/iyagi-deb-test.installed   # this test's package, a leftover it may purge
UNIT=/lib/systemd/system/iyagid.service
WANTS=/etc/systemd/system/multi-user.target.wants/iyagid.service
status() { dpkg-query -W -f='${db:Status-Status}' iyagi 2>/dev/null || echo not-installed; }

# A machine where iyagi is really installed is left alone.
if [ "$(status)" != not-installed ]; then
  [ -e "$MARK" ] || fail "package iyagi is on this machine ($(status)) and not from this test: refusing to purge it"
  say "purging a previous run's package"
  dpkg --purge iyagi >/dev/null
fi
! getent passwd iyagi >/dev/null || fail "a user iyagi exists without the package: refusing to run (purge would delete it)"

tmp=$(mktemp -d /tmp/iyagi-debtest.XXXXXX)
chmod 755 "$tmp"    # apt-get reads the .deb as its _apt user
installed=0
srv_pid=
cleanup() {
  if [ -n "$srv_pid" ] && kill -0 "$srv_pid" 2>/dev/null; then
    kill -TERM "$srv_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
  fi
  if [ -d /run/systemd/system ] && [ "$installed" = 1 ]; then systemctl stop iyagid.service 2>/dev/null || true; fi
  if [ "$installed" = 1 ]; then dpkg --purge iyagi >/dev/null 2>&1 || true; fi
  [ "$(status)" != not-installed ] || rm -f "$MARK"
  rm -rf /etc/systemd/system/iyagid.service.d/50-deb-test.conf
  rm -f /etc/iyagi/admin-notes.txt
  rmdir /etc/iyagi /etc/systemd/system/iyagid.service.d 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---------------------------------------------------------------- build and install
if [ -n "${IYAGI_DEB:-}" ]; then   # a package built before (nspawn.test.sh's container builds nothing)
  mkdir -p "$tmp/out" && cp "$IYAGI_DEB" "$tmp/out/" && deb=$tmp/out/$(basename "$IYAGI_DEB")
else
  deb=$(scripts/build-deb.sh "$tmp/out" | tail -n 1)
fi
[ -f "$deb" ] || fail "build-deb.sh made no package"
say "built $(basename "$deb") ($(stat -c %s "$deb") bytes)"
if command -v lintian >/dev/null 2>&1; then   # not in scripts/deps.sh: where it is, no errors
  lintian --fail-on error "$deb" >"$tmp/lintian.log" 2>&1 || { cat "$tmp/lintian.log" >&2; fail "lintian"; }
  say "lintian: $(grep -c '^[EW]:' "$tmp/lintian.log" || true) errors and warnings"
fi
installed=1
# Under systemd the package starts the unit at once: on a free port (the drop-in's
# IYAGI_LISTEN), not the configuration's 8080.
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
base=http://127.0.0.1:$port
if [ -d /run/systemd/system ]; then
  mkdir -p /etc/systemd/system/iyagid.service.d
  printf '[Service]\nEnvironment=IYAGI_LISTEN=127.0.0.1:%s\n' "$port" > /etc/systemd/system/iyagid.service.d/50-deb-test.conf
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 "$deb" >"$tmp/apt.log" 2>&1 ||
  { cat "$tmp/apt.log" >&2; fail "apt-get install $deb"; }
touch "$MARK"
[ "$(status)" = installed ] || fail "dpkg status after install: $(status)"

files=$(dpkg -L iyagi)
for f in /usr/bin/iyagid /usr/bin/iyagi-bench $UNIT /etc/iyagi/iyagid.conf /etc/logrotate.d/iyagi \
         /usr/share/doc/iyagi/README.md /usr/share/doc/iyagi/copyright /usr/share/doc/iyagi/iyagid.conf.example \
         /usr/share/man/man8/iyagid.8.gz /usr/share/man/man1/iyagi-bench.1.gz; do
  grep -qx "$f" <<<"$files" || fail "dpkg -L iyagi lacks $f"
  [ -e "$f" ] || fail "$f listed but missing"
done
for f in /etc/iyagi/iyagid.conf /etc/logrotate.d/iyagi; do
  dpkg-query -W -f='${Conffiles}\n' iyagi | grep -q "^ $f " || fail "$f is not a conffile"
done
help=$(/usr/bin/iyagid --help) || fail "iyagid --help"
grep -q -- '--listen' <<<"$help" || fail "iyagid --help lists no --listen"
/usr/bin/iyagi-bench --help >/dev/null 2>&1 || fail "iyagi-bench --help"
version=$(dpkg-query -W -f='${Version}' iyagi)
/usr/bin/iyagid --version | grep -q "^iyagid ${version%%+*} " || fail "iyagid --version says $(/usr/bin/iyagid --version), the package $version"
# The shipped configuration is valid and says what the unit expects.
/usr/bin/iyagid check-config --config /etc/iyagi/iyagid.conf >"$tmp/check.log" 2>&1 || { cat "$tmp/check.log" >&2; fail "check-config of the shipped iyagid.conf"; }
grep -qx 'data = /var/lib/iyagi  # config file' "$tmp/check.log" || fail "the shipped configuration does not put data in /var/lib/iyagi"

IFS=: read -r _ _ uid gid _ home shell < <(getent passwd iyagi) || fail "no user iyagi"
[ "$uid" -lt 1000 ] || fail "iyagi is not a system user (uid $uid)"
[ "$(getent group iyagi | cut -d: -f3)" = "$gid" ] || fail "iyagi's primary group is not iyagi"
[ "$home" = /var/lib/iyagi ] || fail "iyagi's home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "iyagi's shell is $shell"
for d in /var/lib/iyagi /var/backups/iyagi; do
  [ "$(stat -c '%U:%G %a' $d)" = "iyagi:iyagi 700" ] || fail "$d is $(stat -c '%U:%G %a' $d)"
done
if command -v systemctl >/dev/null 2>&1; then
  [ "$(readlink "$WANTS")" = "$UNIT" ] || fail "the unit is not enabled ($WANTS)"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  # Documentation=man:iyagid(8) is checked by running man, which a minimal system lacks.
  man_opt=(); command -v man >/dev/null 2>&1 || man_opt=(--man=no)
  systemd-analyze verify "${man_opt[@]}" "$UNIT" >"$tmp/verify.log" 2>&1 || { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify $UNIT"; }
  exposure=$(systemd-analyze security --offline=yes "$UNIT" 2>/dev/null | sed -n 's/.*Overall exposure level for iyagid.service: \([0-9.]*\).*/\1/p')
  [ -n "$exposure" ] || fail "systemd-analyze security gave no score"
  awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "exposure $exposure above 2.0: the unit's hardening regressed"
  say "unit verified; systemd-analyze security: exposure $exposure"
fi
say "installed: files, conffile, user iyagi (uid $uid), /var/lib/iyagi, unit"

# ---------------------------------------------------------------- run it
# As the unit would run it, without systemd: the iyagi user, no capabilities,
# no_new_privs, no W+X memory (PR_SET_MDWE = 65, REFUSE_EXEC_GAIN = 1; it
# survives execve; the prctl system call is 157 on x86_64, 167 on arm64).
mdwe=()
case $(uname -m) in x86_64) nr=157 ;; aarch64) nr=167 ;; *) nr= ;; esac
if [ -n "$nr" ] && perl -e "exit(syscall($nr, 66, 0, 0, 0, 0) < 0 ? 1 : 0)"; then
  mdwe=(perl -e "syscall($nr, 65, 1, 0, 0, 0) == 0 or die \"PR_SET_MDWE: \$!\\n\"; exec @ARGV or die \"exec: \$!\\n\"" --)
else
  say "no PR_SET_MDWE on this kernel: MemoryDenyWriteExecute not emulated"
fi
# as_iyagi COMMAND...: with a clean environment, the unit's user and limits (prefix a command
# with it, inside `(cd /var/lib/iyagi && exec ...)`: then $! of a background one is iyagid's PID).
as_iyagi=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/iyagi LANG=C.UTF-8
          IYAGI_LISTEN="127.0.0.1:$port"
          setpriv --reuid=iyagi --regid=iyagi --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all
          "${mdwe[@]}")
start_server() {
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl restart iyagid.service
  else
    # The unit's ExecStart; IYAGI_LISTEN (in as_iyagi) moves the file's port to a free one.
    (cd /var/lib/iyagi && exec "${as_iyagi[@]}" /usr/bin/iyagid --config /etc/iyagi/iyagid.conf) >>"$tmp/server.log" 2>&1 &
    srv_pid=$!
  fi
  for _ in $(seq 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" = 200 ] && return 0
    [ -d /run/systemd/system ] || kill -0 "$srv_pid" 2>/dev/null || fail "iyagid exited at start"
    sleep 0.1
  done
  fail "no /healthz 200 on $base within 15 s"
}
stop_server() {  # SIGTERM: drain and exit 0 within --shutdown-timeout (10 s)
  if [ -d /run/systemd/system ]; then
    systemctl stop iyagid.service
    [ "$(systemctl show -P Result iyagid.service)" = success ] || fail "the unit stopped with $(systemctl show -P Result iyagid.service)"
    return 0
  fi
  kill -TERM "$srv_pid"
  for _ in $(seq 150); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$srv_pid" 2>/dev/null && fail "iyagid still running 15 s after SIGTERM"
  local rc=0
  wait "$srv_pid" || rc=$?
  srv_pid=
  [ "$rc" -eq 0 ] || fail "iyagid exited $rc after SIGTERM"
}
smoke() { (cd tests/pkg && node smoke.mjs "$1" "$base" "$tmp/smoke.json") || fail "smoke test ($1)"; }

start_server
smoke first
# systemctl reload (ExecReload: SIGHUP) must not stop it: it reloads the TLS certificate (or
# says there is none) and reopens the access log.
if [ ! -d /run/systemd/system ]; then
  kill -HUP "$srv_pid"
  sleep 0.5
  kill -0 "$srv_pid" 2>/dev/null || fail "SIGHUP (systemctl reload) stopped iyagid"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" = 200 ] || fail "no /healthz 200 after SIGHUP"
fi
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/")" = 200 ] || fail "the web client (GET /)"
[ -d /var/lib/iyagi/db ] || fail "no store in /var/lib/iyagi"
[ -z "$(find /var/lib/iyagi ! -user iyagi)" ] || fail "files in /var/lib/iyagi not owned by iyagi"
stop_server
if [ -d /run/systemd/system ]; then how="iyagid.service under systemd"; else how="iyagid as iyagi${mdwe:+ (MDWE)}"; fi
say "ran $how on $base: health, message, history, thumbnail, SIGTERM exit 0"

# ---------------------------------------------------------------- failure modes
if [ ! -d /run/systemd/system ]; then
  # The service's user cannot write where it has no business (ProtectSystem=strict does the
  # same under systemd): a data directory under /etc is refused, and nothing is created.
  rc=0
  (cd /var/lib/iyagi && exec "${as_iyagi[@]}" timeout 20 /usr/bin/iyagid --listen "127.0.0.1:$port" --data /etc/iyagi/data) \
    >"$tmp/denied.log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then fail "iyagid with an unwritable --data: exit $rc"; fi
  [ ! -e /etc/iyagi/data ] || fail "the iyagi user created /etc/iyagi/data"
  say "as iyagi, --data /etc/iyagi/data: exit $rc, $(grep -v '^$' "$tmp/denied.log" | tail -n 1 | cut -c 26-)"
fi
# A configuration mistake exits 2 at once, which the unit does not restart
# (RestartPreventExitStatus=2): an unknown name in the file, a bad value from the
# environment, an unreadable file.
cp /etc/iyagi/iyagid.conf "$tmp/bad.conf"
chmod 644 "$tmp/bad.conf"
echo "lisen = 127.0.0.1:1" >> "$tmp/bad.conf"
bad_config() {  # bad_config EXPECTED-MESSAGE [VAR=VALUE...] -- IYAGID-ARGS...
  local want=$1 env=() rc=0; shift
  while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
  (cd /var/lib/iyagi && exec "${as_iyagi[@]}" env "${env[@]}" timeout 20 /usr/bin/iyagid "$@") >"$tmp/bad.log" 2>&1 || rc=$?
  if [ "$rc" -ne 2 ] || ! grep -q "$want" "$tmp/bad.log"; then
    cat "$tmp/bad.log" >&2
    fail "a configuration mistake exits $rc, not 2 with '$want'"
  fi
}
bad_config "unknown option 'lisen'" -- --config "$tmp/bad.conf"
bad_config "IYAGI_SHUTDOWN_TIMEOUT must be an integer" IYAGI_SHUTDOWN_TIMEOUT=soon -- --config /etc/iyagi/iyagid.conf
bad_config "cannot open" -- --config "$tmp/none.conf"
say "configuration mistakes exit 2 (a wrong name, a wrong value, no file)"

# An upgrade (here: the same version again) keeps an edited conffile and the data.
echo "# edited by deb.test.sh" >> /etc/iyagi/iyagid.conf
dpkg -i "$deb" >"$tmp/reinstall.log" 2>&1 || { cat "$tmp/reinstall.log" >&2; fail "dpkg -i again"; }
grep -q '^# edited by deb.test.sh$' /etc/iyagi/iyagid.conf || fail "the reinstall replaced the edited conffile"
start_server
smoke again
stop_server
say "reinstall: the edited conffile and the data kept"

# dpkg -r: the program goes; configuration, user and data stay.
dpkg -r iyagi >"$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log" >&2; fail "dpkg -r"; }
[ "$(status)" = config-files ] || fail "status after dpkg -r: $(status)"
if [ -e /usr/bin/iyagid ] || [ -e "$UNIT" ]; then fail "dpkg -r left the program or the unit"; fi
[ -f /etc/iyagi/iyagid.conf ] || fail "dpkg -r removed the configuration"
[ -d /var/lib/iyagi/db ] || fail "dpkg -r removed the data"
getent passwd iyagi >/dev/null || fail "dpkg -r removed the user"
if command -v systemctl >/dev/null 2>&1; then
  [ "$(readlink /etc/systemd/system/iyagid.service)" = /dev/null ] || fail "dpkg -r did not mask the unit"
fi

# dpkg --purge: configuration, data, user, group and the enablement go; a file the admin
# left in /etc/iyagi (and so the directory) stays.
echo "notes" > /etc/iyagi/admin-notes.txt
dpkg --purge iyagi >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "dpkg --purge"; }
installed=0
[ "$(status)" = not-installed ] || fail "status after purge: $(status)"
[ ! -e /var/lib/iyagi ] || fail "purge left /var/lib/iyagi"
# (backups stay: a directory holding some is kept)
[ ! -d /var/backups/iyagi ] || [ -n "$(ls -A /var/backups/iyagi)" ] || fail "purge left an empty /var/backups/iyagi"
[ ! -e /etc/iyagi/iyagid.conf ] || fail "purge left the conffile"
[ -f /etc/iyagi/admin-notes.txt ] || fail "purge deleted a file it does not own"
! getent passwd iyagi >/dev/null || fail "purge left the user iyagi"
! getent group iyagi >/dev/null || fail "purge left the group iyagi"
[ ! -L "$WANTS" ] || fail "purge left $WANTS"
[ ! -L /etc/systemd/system/iyagid.service ] || fail "purge left the unit masked"
say "remove kept the data, purge removed it"
say "ok"
