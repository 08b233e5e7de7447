#!/bin/sh
# Install Debian's chromium for the report's headless-browser test (tests/test_report.py).
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (or sudo) and apt.
set -eu

if [ -x /usr/bin/chromium ]; then
    echo "install-browser: chromium already installed at /usr/bin/chromium"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-browser: /usr/bin/chromium is missing and this is not root; run as root: apt-get install -y chromium" >&2
    exit 1
fi

echo "install-browser: installing chromium with apt-get"
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
/usr/bin/chromium --version
