#!/usr/bin/env bash
# Set up (first run only) and start the service with embedded defaults on port 8081 (PORT overrides).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh requirements.txt
exec .venv/bin/python app.py
