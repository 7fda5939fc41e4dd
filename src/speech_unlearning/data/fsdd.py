"""The Free Spoken Digit Dataset (FSDD): real recorded speech for both tasks.

Layout: `ROOT/recordings/{digit}_{speaker}_{take}.wav`, 8 kHz mono (read_wav resamples to
16 kHz with soxr); 6 speakers x 10 digits x 50 takes in the public release.

- task "kws": the label is the digit (label_names "0".."9"); task "sid": the speaker (names sorted).
- splits: takes 0-4 are the dataset's official test split; takes 5-9 are our validation split
  (the dataset defines none); takes 10 and up train. For the full release: 2,400 / 300 / 300.
- clip_seconds = 1.0: recordings last 0.14-2.28 s, so the few longer than 1 s are cropped to
  their first second by the feature pipeline and shorter ones are zero-padded.
- the speaker key is the speaker's name and `word` the digit, for both tasks.

With no path (corpus spec "fsdd"), the root is $SPEECH_UNLEARNING_FSDD, else the copy at
`<project>/../shared/data/fsdd` when it exists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .corpus import CORPORA, Corpus, CorpusError, Utterance
from .loader_helpers import build_corpus, check_task, reject_unknown_options

ENV_VARIABLE = "SPEECH_UNLEARNING_FSDD"
# src/speech_unlearning/data/fsdd.py -> parents[3] is the project root in an editable install.
SHARED_COPY = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "fsdd"
RECORDINGS = "recordings"
FILE_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")
DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
TEST_TAKES = range(0, 5)  # the dataset's official test split
VALIDATION_TAKES = range(5, 10)  # ours; the dataset defines no validation split
CLIP_SECONDS = 1.0


def default_fsdd_root() -> Path:
    """$SPEECH_UNLEARNING_FSDD, else the shared copy beside the project; CorpusError if neither."""
    configured = os.environ.get(ENV_VARIABLE)
    if configured:
        return Path(configured)
    if SHARED_COPY.is_dir():
        return SHARED_COPY
    raise CorpusError(
        f"FSDD not found: set ${ENV_VARIABLE} or pass the folder of a clone as fsdd:PATH "
        f"(looked for {SHARED_COPY})"
    )


def split_of_take(take: int) -> str:
    """Takes 0-4 -> "test" (official), 5-9 -> "validation", 10 and up -> "train"."""
    if take in TEST_TAKES:
        return "test"
    if take in VALIDATION_TAKES:
        return "validation"
    return "train"


def scan_recordings(root: Path) -> list[tuple[str, str, str, int]]:
    """(path, digit, speaker, take) of every recording, in file-name order."""
    folder = root / RECORDINGS
    if not folder.is_dir():
        raise CorpusError(f"{folder}: FSDD recordings folder not found (expected ROOT/{RECORDINGS}/*.wav)")
    found = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.name.endswith(".wav"):
                continue
            match = FILE_NAME.match(entry.name)
            if match is None:
                raise CorpusError(
                    f"{entry.path}: file name is not {{digit}}_{{speaker}}_{{take}}.wav as in FSDD"
                )
            found.append((entry.path, match.group(1), match.group(2), int(match.group(3))))
    if not found:
        raise CorpusError(f"{folder}: no .wav recordings")
    return found


def load_fsdd(root: str | Path, task: str) -> Corpus:
    """Read FSDD for `task` ("kws": digits, "sid": speakers); CorpusError naming the file at fault."""
    check_task("fsdd", task, ("kws", "sid"))
    root = Path(root).expanduser().resolve()
    recordings = scan_recordings(root)
    speakers = tuple(sorted({speaker for _, _, speaker, _ in recordings}))
    label_names = DIGITS if task == "kws" else speakers
    utterances = [
        Utterance(
            utt_id=Path(path).stem,
            path=path,
            label=label_names.index(digit if task == "kws" else speaker),
            speaker=speaker,
            split=split_of_take(take),
            word=digit,
        )
        for path, digit, speaker, take in recordings
    ]
    info = {"speakers": list(speakers), "native_sample_rate": 8000}
    return build_corpus(f"fsdd-{task}", task, root, label_names, utterances, CLIP_SECONDS, info)


@CORPORA.register("fsdd")
def load(task: str, path: str | None, cache_dir: Path, **options) -> Corpus:
    """Corpus spec `fsdd` (default copy) or `fsdd:PATH`; no options."""
    check_task("fsdd", task, ("kws", "sid"))
    reject_unknown_options("fsdd", options, ())
    return load_fsdd(path if path is not None else default_fsdd_root(), task)
