#!/usr/bin/env bash
# Create .venv and install the pinned, CPU-only requirements (idempotent).
# Usage: scripts/setup.sh [requirements file]
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned in the same command so pip never swaps in a CUDA build.
.venv/bin/python -m pip install -q -r "$REQ"
