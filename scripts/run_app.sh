#!/usr/bin/env bash
# Install the app's requirements and launch it on the bundled model (http://127.0.0.1:7860).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1
exec .venv/bin/python launch.py "$@"
