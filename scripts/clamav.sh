#!/usr/bin/env bash
# Installs ClamAV's daemon (clamd) and tools from Debian's packages when
# clamd is missing, for the antivirus tests. The tests start their own
# private clamd with a local signature database (no signature download is
# possible or needed), so the Debian service is not started here.
set -euo pipefail
if command -v clamd >/dev/null 2>&1 || [ -x /usr/sbin/clamd ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "clamav.sh: clamd is missing and this is not root; install clamav-daemon" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends clamav-daemon
# Debian's package starts its own clamd and freshclam where systemd runs;
# the tests need neither.
if command -v systemctl >/dev/null 2>&1; then
  systemctl stop clamav-daemon clamav-freshclam >/dev/null 2>&1 || true
fi
