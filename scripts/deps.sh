#!/usr/bin/env bash
# Installs what building, running and testing iyagi needs on Debian 12, and
# only what is missing (so `make run` stays quick on a machine that has it).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(gcc make pkg-config libuv1-dev node-llhttp libjansson-dev libargon2-dev libssl-dev librocksdb-dev
      clang libclang-rt-14-dev curl)
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

# The end-to-end tests' client library (ws), pinned by package-lock.json.
if [ ! -d tests/e2e/node_modules ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
