#!/usr/bin/env bash
# Creates .venv and installs the toolkit into it. Safe to run again: it reinstalls only when
# pyproject.toml changed. CPU machines get the pinned CPU build of torch; on a GPU machine,
# install your own CUDA torch into .venv first (or set SPEECH_UNLEARNING_KEEP_TORCH=1) and this
# script leaves it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${SPEECH_UNLEARNING_VENV:-.venv}
CPU_TORCH="torch==2.13.0"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi

stamp="$VENV/.speech_unlearning.stamp"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import speech_unlearning" 2>/dev/null; then
  exit 0
fi

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if [ "${SPEECH_UNLEARNING_KEEP_TORCH:-0}" = "1" ]; then
    echo "[setup] SPEECH_UNLEARNING_KEEP_TORCH=1 but torch is not installed in $VENV" >&2
    exit 1
  fi
  echo "[setup] installing $CPU_TORCH (CPU build)"
  "$VENV/bin/python" -m pip install --quiet "$CPU_TORCH"
fi
echo "[setup] installing speech_unlearning and its dependencies"
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
echo "$want" > "$stamp"
