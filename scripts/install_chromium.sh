#!/usr/bin/env bash
# Debian's Chromium, which tests/report/test_html.py opens the HTML report in (Playwright drives the
# system binary; no browser download works offline). Nothing to do when it is there; apt as root,
# or through sudo.
set -euo pipefail
command -v chromium > /dev/null && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -q
$sudo apt-get install -y -q chromium
