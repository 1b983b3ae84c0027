#!/usr/bin/env bash
# Installs, on Debian 12, what one of iyagi's make targets needs, and only
# what is missing (so a second `make run` starts at once).
#
#   scripts/deps.sh build   Debian packages to build and run iyagid and iyagi-bench
#   scripts/deps.sh test    the above, plus the test tools: clang (libFuzzer),
#                           Chromium and fonts, Node.js and npm from Debian, and
#                           the test suites' npm packages (npm ci)
#   scripts/deps.sh bench   the build packages, plus what bench/run.sh uses: jq (the
#                           tables and targets), curl; postgresql for BENCH_STORE=postgres
#   scripts/deps.sh cluster the build packages, plus the servers of a local
#                           cluster (scripts/cluster.sh): nats-server, haproxy,
#                           postgresql (their Debian services are not used)
#
# Running the server never needs the npm registry: only `test` touches it.
# Everything comes from Debian 12's own archive; Node.js is Debian's 18, so
# every npm package is pinned (package-lock.json) to a version whose
# `engines` accept it, and npm runs with --engine-strict so a bump that
# breaks that fails here, loudly, instead of in a user's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-}
build_pkgs=(gcc make pkg-config libuv1-dev node-llhttp libjansson-dev libargon2-dev libssl-dev
            librocksdb-dev libcurl4-openssl-dev libpq-dev libnats-dev libsqlite3-dev
            libinih-dev  # the --config file's parser
            libvips42)   # thumbnails: the runtime library only, loaded with dlopen (src/media/thumb.c)
test_pkgs=(clang libclang-rt-14-dev curl chromium fonts-noto-cjk fonts-noto-color-emoji
           postgresql nats-server haproxy    # throwaway servers for the store and cluster tests
           nginx                             # deploy/nginx-iyagi.conf.in, tested in front of iyagid
           openssl                           # the TLS tests' certificates (tests/e2e/lib/tlscerts.mjs)
           mount                             # a small tmpfs for the full-disk test (not Essential)
           prometheus                        # promtool: /metrics, deploy/alerts.yml and its tests
           dpkg-dev adduser)                 # the .deb's Depends (dpkg-shlibdeps) and its postinst
cluster_pkgs=(nats-server haproxy postgresql)
bench_pkgs=(jq curl)

case "$what" in
  build) pkgs=("${build_pkgs[@]}") ;;
  test)  pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}")
         # A machine that already has a Node.js (not Debian's) keeps it.
         command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
         command -v npm >/dev/null 2>&1 || pkgs+=(npm) ;;
  cluster) pkgs=("${build_pkgs[@]}" "${cluster_pkgs[@]}") ;;
  bench) pkgs=("${build_pkgs[@]}" "${bench_pkgs[@]}")
         [ "${BENCH_STORE:-}" != postgres ] || pkgs+=(postgresql) ;;
  *) echo "usage: scripts/deps.sh build|test|cluster|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "deps: missing ${missing[*]}; run as root or install sudo" >&2; exit 1; }
    SUDO=sudo
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ "$what" = test ] || exit 0

# The test suites' npm packages (ws, playwright-core), pinned by package-lock.json.
for d in tests/e2e tests/web; do
  [ -f "$d/package-lock.json" ] || continue
  if [ ! -d "$d/node_modules" ] || [ "$d/package-lock.json" -nt "$d/node_modules" ]; then
    (cd "$d" && npm ci --engine-strict --no-audit --no-fund)
  fi
done
