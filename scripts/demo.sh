#!/usr/bin/env bash
# The main job: set up, build the embedded corpus and run the demo unlearning benchmark on it;
# then, when a Speech Commands folder is found, the same on real speech (tables side by side).
# Extra arguments go to both grids (e.g. --workers 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/speech-unlearn bench --preset demo "$@"
real=$(.venv/bin/python -c "from speech_unlearning.data.speech_commands import default_speech_commands_root as f; r = f(); print(r if r and r.is_dir() else '')")
if [ -n "$real" ]; then
  echo
  echo "[demo] real speech: Speech Commands clips in $real"
  exec .venv/bin/speech-unlearn bench --preset demo-real --set speech_commands="$real" "$@"
fi
echo "[demo] no Speech Commands folder found: set SPEECH_UNLEARNING_SPEECH_COMMANDS=PATH (a v0.02 folder) to add real-speech tables"
