#!/usr/bin/env bash
# Install Debian's headless browser for the page test (tests/test_serve_page.py): chromium + chromium-driver.
# Playwright's own browser download is not needed. Needs root (or sudo) and apt; safe to run again.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
