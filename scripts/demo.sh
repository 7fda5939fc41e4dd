#!/usr/bin/env bash
# The main job: set up, build the embedded corpus, and run the demo unlearning benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/speech-unlearn bench --preset demo "$@"
