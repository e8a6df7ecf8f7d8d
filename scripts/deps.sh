#!/usr/bin/env bash
# deps.sh: install the Debian packages meridian's tests use, if missing.
# Runs apt-get update only when something must be installed. Needs root.
set -euo pipefail
PKGS=(bind9-dnsutils postgresql iproute2 iptables iputils-ping systemd prometheus chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing ${missing[*]}: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
