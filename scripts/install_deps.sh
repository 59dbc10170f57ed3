#!/usr/bin/env bash
# Installs the Debian packages the relay needs, and only the ones that are missing.
# Runs apt-get only when something is missing, so repeated `make` calls stay fast.
set -euo pipefail
packages=(g++ cmake make pkg-config libabsl-dev libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev libbenchmark-dev libsodium-dev zlib1g-dev libsystemd-dev systemd
  dpkg-dev debhelper lintian help2man iproute2 openssl python3 python3-prometheus-client curl)
packages+=("$@")
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install_deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
