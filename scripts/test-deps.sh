#!/usr/bin/env bash
# Installs the Debian packages the tests use as real clients and peers (dig, Chromium for the dashboard test,
# ip, systemd-analyze), when missing. Needs root (apt-get); otherwise it names what to install.
set -euo pipefail
need=()
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
((${#need[@]})) || exit 0
if [ "$(id -u)" != 0 ]; then
  echo "test-deps: please install: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
