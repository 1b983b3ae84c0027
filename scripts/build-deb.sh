#!/usr/bin/env bash
# Builds the Debian package of iyagi (issue 14) from this tree, without
# debhelper: the release build installed with `make install DESTDIR=ROOT
# PREFIX=/usr` into a staging root, the maintainer scripts of
# deploy/debian/, a control file, then `dpkg-deb --build --root-owner-group`.
#
#   scripts/build-deb.sh [OUTDIR]   writes OUTDIR/iyagi_VERSION_ARCH.deb
#                                   (default build/deb) and prints its path last
#
# VERSION: $IYAGI_VERSION if set; else the release of src/base/version.h
# (0.14.0), plain on its tag vN, else with +gitYYYYMMDD.HHMMSS.HASH of the
# last commit (its time: the same commit gives the same version).
# Depends: computed by dpkg-shlibdeps (package dpkg-dev) from the libraries
# the binaries link, or, without it, the list below, which is what it
# computes on Debian 12; with adduser (postinst) and procps (the unit's
# ExecReload runs /bin/kill; a minimal Debian has no procps, found by
# tests/pkg/nspawn.test.sh). libvips42 is a Recommends: iyagid loads it with
# dlopen for thumbnails and works without it.
#
# What the package holds:
#   /usr/bin/iyagid, /usr/bin/iyagi-bench     (stripped)
#   /lib/systemd/system/iyagid.service        (deploy/iyagid.service)
#   /etc/iyagi/iyagid.conf                    (a conffile: deploy/iyagid.conf)
#   /etc/logrotate.d/iyagi                    (a conffile: deploy/iyagi.logrotate)
#   /usr/share/doc/iyagi/                     README, docs, the example configuration
#   /usr/share/man/man8/iyagid.8.gz, man1/iyagi-bench.1.gz
# and postinst (user and group iyagi, /var/lib/iyagi 0700, the unit enabled,
# started if systemd runs), prerm (stop), postrm (purge: user, data, enablement).
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

out=${1:-build/deb}
arch=$(dpkg --print-architecture)
# The release (src/base/version.h, what iyagid --version says), and past it
# the last commit's time and hash: later commits give greater versions.
release=$(sed -n 's/^#define IYAGI_VERSION "\(.*\)"$/\1/p' src/base/version.h)
[ -n "$release" ] || { echo "build-deb: no IYAGI_VERSION in src/base/version.h" >&2; exit 1; }
if [ -n "${IYAGI_VERSION:-}" ]; then
  version=$IYAGI_VERSION
elif ! git rev-parse --git-dir >/dev/null 2>&1; then
  version=$release
elif [ "$(git describe --exact-match --tags 2>/dev/null)" = "v$release" ]; then
  version=$release     # the release's own tag
else
  version="$release+git$(TZ=UTC git log -1 --date=format-local:%Y%m%d.%H%M%S --format=%cd).$(git rev-parse --short=7 HEAD)"
fi
fallback_depends="libargon2-1, libc6, libcurl4, libinih1, libjansson4, libnats3.4, libpq5, librocksdb7.8, libsqlite3-0, libssl3, libuv1"

work=$(mktemp -d /tmp/iyagi-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/debian/iyagi    # where dpkg-shlibdeps expects a package's files

make -s -j"${JOBS:-2}" VARIANT=rel all
make -s install DESTDIR="$root" PREFIX=/usr UNITDIR=/lib/systemd/system CONFDIR=/etc/iyagi >/dev/null
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/iyagid" "$root/usr/bin/iyagi-bench"

# Debian's documentation conventions: compressed manual pages, the copyright
# file, a compressed changelog (changelog.gz: a native package, no Debian revision).
gzip -9n "$root/usr/share/man/man8/iyagid.8" "$root/usr/share/man/man1/iyagi-bench.1"
doc=$root/usr/share/doc/iyagi
cat > "$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: iyagi
Comment: iyagid links Debian's own libraries (libuv, jansson, libargon2,
 OpenSSL, RocksDB, libcurl, libpq, libnats, SQLite, libinih) and compiles llhttp from
 Debian's node-llhttp sources; their copyrights are in their packages.

Files: *
Copyright: 2026 the iyagi authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0 (also LICENSE in the source).
EOF
{
  echo "iyagi ($version) unstable; urgency=medium"
  echo
  echo "  * Built by scripts/build-deb.sh from commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)."
  echo
  echo " -- iyagi maintainers <iyagi@example.org>  $(date -R -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -9n > "$doc/changelog.gz"

install -d "$root/DEBIAN"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$root/DEBIAN/"
install -D -m 0644 deploy/iyagi.logrotate "$root/etc/logrotate.d/iyagi"
printf '%s\n' /etc/iyagi/iyagid.conf /etc/logrotate.d/iyagi > "$root/DEBIAN/conffiles"

depends=$fallback_depends
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
  : > "$work/debian/control"   # dpkg-shlibdeps wants one; nothing in it is read
  depends=$(cd "$work" && dpkg-shlibdeps -O -e debian/iyagi/usr/bin/iyagid -e debian/iyagi/usr/bin/iyagi-bench \
            2>/dev/null | sed -n 's/^shlibs:Depends=//p')
  [ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
fi

(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$work/md5sums"
install -m 0644 "$work/md5sums" "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat > "$root/DEBIAN/control" <<EOF
Package: iyagi
Version: $version
Architecture: $arch
Maintainer: iyagi maintainers <iyagi@example.org>
Section: net
Priority: optional
Installed-Size: $size
Depends: adduser, procps, $depends
Recommends: libvips42
Suggests: logrotate, postgresql, nats-server, haproxy
Description: chat server: 1:1 and group chat over WebSocket and HTTP
 iyagid serves an HTTP API, a chat WebSocket and a web client on one port.
 Every message is durable on disk (an embedded RocksDB store, or PostgreSQL)
 before it is acknowledged, and every device of an account catches up
 exactly. Several nodes form a cluster over NATS.
 .
 The package runs it as the system user iyagi under a hardened systemd unit
 (iyagid.service), configured by /etc/iyagi/iyagid.conf, with its state in
 /var/lib/iyagi. iyagi-bench, the load generator, is included.
EOF

mkdir -p "$out"
deb="$out/iyagi_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group -Zxz "$root" "$deb" >/dev/null
echo "$deb"
