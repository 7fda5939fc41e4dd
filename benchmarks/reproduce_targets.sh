#!/usr/bin/env bash
# The forgetting-targets experiment of docs/BENCHMARKS.md in one command: the quick and fsdd
# grids (every registered method, i.e. the ten baselines and calibrated, plus SCRUB+SuperLoss;
# the presets' seeds 0-1), then, per preset, every method's Avg. Gap to Retrain and the targets
# check of calibrated, with bootstrap intervals.
#
#   bash benchmarks/reproduce_targets.sh [RUNS_DIR] [bench options ...]
#
# RUNS_DIR (default: the project's runs/) receives quick/ and fsdd/. Further options go to every
# `speech-unlearn bench` call, which runs from the project root (relative paths in them are read
# from there), e.g. --cache-dir DIR or --set seeds=2,3,4 (a later --set of the same key wins, so
# --set methods=calibrated runs only calibrated and the references).
# About an hour on two CPU cores. Run it again to resume: finished runs are kept.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'   # this header
    exit 0
fi
runs=runs
if [[ $# -gt 0 && $1 != -* ]]; then
    runs=$(realpath -m -- "$1")  # from the caller's folder, before moving to the project root
    shift
fi
cd "$(dirname "$0")/.."
methods=all,scrub+superloss  # 'all' is read from the method registry, so new methods join
for preset in quick fsdd; do
    .venv/bin/speech-unlearn bench --preset "$preset" --run-dir "$runs/$preset" --set methods="$methods" "$@"
done
for preset in quick fsdd; do
    echo
    echo "## Targets: $preset ($runs/$preset)"
    .venv/bin/python benchmarks/unlearning_targets.py "$runs/$preset"
done
