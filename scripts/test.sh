#!/usr/bin/env bash
# Set up and run the test suite. pytest's exit code is passed through: 5 (no tests collected)
# counts as a failure, like any other non-zero code.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
