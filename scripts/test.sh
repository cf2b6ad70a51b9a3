#!/usr/bin/env bash
# Install certify with its test tools (idempotent), check the import layers
# (pyproject.toml [tool.importlinter]) and the typed contracts (mypy --strict on the
# attacks, assess and the conductor), and run the test suite.
# Extra arguments go to pytest (e.g. --runslow for the long tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/lint-imports --no-cache
.venv/bin/mypy --strict --no-error-summary certify/attacks certify/assess certify/conductor
exec .venv/bin/python -m pytest "$@"
