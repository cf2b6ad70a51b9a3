#!/usr/bin/env bash
# Install certify with its test tools (idempotent) and run the test suite.
# Extra arguments go to pytest (e.g. --runslow for the long tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
