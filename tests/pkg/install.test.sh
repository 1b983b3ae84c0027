#!/usr/bin/env bash
# install.test.sh — `make install` and `make uninstall` into a staging root
# (DESTDIR), as any user: where each file goes for the default PREFIX
# (/usr/local) and for PREFIX=/usr, the unit's paths rewritten to the
# prefix, an existing /etc/iyagi/iyagid.conf never overwritten (the new one
# lands in the docs), and uninstall removing the program but leaving the
# configuration. The installed binary answers --help, and validates the
# shipped iyagid.conf with every commented example uncommented (check-config).
#
#   tests/pkg/install.test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "install.test: FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d /tmp/iyagi-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The default prefix.
d=$tmp/a
make -s install DESTDIR="$d" >/dev/null
for f in usr/local/bin/iyagid usr/local/bin/iyagi-bench usr/local/lib/systemd/system/iyagid.service \
         etc/iyagi/iyagid.conf usr/local/share/doc/iyagi/README.md usr/local/share/doc/iyagi/iyagid.conf.example \
         usr/local/share/man/man8/iyagid.8 usr/local/share/man/man1/iyagi-bench.1; do
  [ -f "$d/$f" ] || fail "make install made no $f"
done
[ -x "$d/usr/local/bin/iyagid" ] || fail "iyagid not executable"
"$d/usr/local/bin/iyagid" --help >/dev/null || fail "the installed iyagid --help"
unit=$d/usr/local/lib/systemd/system/iyagid.service
grep -qx 'ExecStart=/usr/local/bin/iyagid --config /etc/iyagi/iyagid.conf' "$unit" || fail "ExecStart not rewritten to /usr/local/bin"
! grep -q '/usr/bin/iyagid\|/usr/share/doc' "$unit" || fail "the unit still names /usr/bin or /usr/share/doc"
cmp -s deploy/iyagid.conf "$d/etc/iyagi/iyagid.conf" || fail "the installed iyagid.conf differs from deploy/iyagid.conf"
# The configuration is valid as shipped, and so is every commented `#name = value` example
# (each names a real option with a value it accepts).
"$d/usr/local/bin/iyagid" check-config --config "$d/etc/iyagi/iyagid.conf" >/dev/null || fail "check-config of iyagid.conf"
sed -E 's/^#([a-z][a-z-]* = )/\1/' deploy/iyagid.conf > "$tmp/all.conf"
n=$(grep -cE '^[a-z][a-z-]* = ' "$tmp/all.conf")
[ "$n" -ge 25 ] || fail "only $n options in iyagid.conf"
"$d/usr/local/bin/iyagid" check-config --config "$tmp/all.conf" >"$tmp/all.out" 2>&1 || { cat "$tmp/all.out" >&2; fail "iyagid.conf's commented examples"; }

# A second install keeps an edited configuration.
echo "listen = 127.0.0.1:9999   # mine" >> "$d/etc/iyagi/iyagid.conf"
out=$(make -s install DESTDIR="$d")
grep -q 'keeping' <<<"$out" || fail "make install did not say it kept the configuration"
grep -q '# mine' "$d/etc/iyagi/iyagid.conf" || fail "make install overwrote an existing iyagid.conf"

# Uninstall: the program, unit, manual pages and docs go; configuration stays.
make -s uninstall DESTDIR="$d" >/dev/null
left=$(cd "$d" && find . -type f | sort)
[ "$left" = "./etc/iyagi/iyagid.conf" ] || fail "make uninstall left: $left"

# The package's layout.
d=$tmp/b
make -s install DESTDIR="$d" PREFIX=/usr UNITDIR=/lib/systemd/system >/dev/null
[ -x "$d/usr/bin/iyagid" ] || fail "PREFIX=/usr: no /usr/bin/iyagid"
cmp -s deploy/iyagid.service "$d/lib/systemd/system/iyagid.service" || fail "with PREFIX=/usr the unit is not deploy/iyagid.service as it is"
echo "install.test: ok"
