#!/bin/sh
# Install Chromium from Debian's packages, for tests/test_report_browser.py (headless rendering of report.html).
# Needs root and apt-get; `make test` runs it when chromium is missing, and the test skips where it is still missing.
# Time limit per apt step: $CHROMIUM_INSTALL_TIMEOUT seconds (default 600).
set -eu
limit="${CHROMIUM_INSTALL_TIMEOUT:-600}"
if [ "$(id -u)" != 0 ]; then
    echo "install_chromium.sh: not root; install it yourself: sudo apt-get install chromium" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: no apt-get (not Debian/Ubuntu); install Chromium with your package manager" >&2
    exit 3
fi
export DEBIAN_FRONTEND=noninteractive
timeout "$limit" apt-get update -qq
timeout "$limit" apt-get install -y -qq chromium
command -v chromium
