#!/usr/bin/env bash
# Installs the Debian 12 packages certflow needs to build, run and test, and nothing else.
# Only packages that are missing are installed; apt-get update runs only when something is missing.
# Must run as root when something is missing. Safe to run again.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config clang-format
  libuv1-dev libxml2-dev libsqlite3-dev sqlite3 libssl-dev openssl libcurl4-openssl-dev curl
  node-llhttp libjansson-dev libinih-dev libsodium-dev libcmocka-dev faketime
)
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages need root: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
