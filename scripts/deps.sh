#!/usr/bin/env bash
# Installs what building, running and testing iyagi needs on Debian 12, and
# only what is missing (so `make run` stays quick on a machine that has it).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(gcc make pkg-config libuv1-dev node-llhttp libjansson-dev libargon2-dev libssl-dev librocksdb-dev libcurl4-openssl-dev
      clang libclang-rt-14-dev curl)
[ -d tests/web ] && pkgs+=(chromium fonts-noto-cjk fonts-noto-color-emoji)   # browser tests drive Debian's Chromium
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The test suites' npm packages (ws, playwright-core), pinned by package-lock.json.
for d in tests/e2e tests/web; do
  [ -f "$d/package-lock.json" ] || continue
  if [ ! -d "$d/node_modules" ] || [ "$d/package-lock.json" -nt "$d/node_modules" ]; then
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
