"""Google Speech Commands (v0.01 / v0.02) for keyword spotting, read from a user's local copy.

The folder layout and how it is scanned are in `speech_commands_layout`; the speaker-ID view of
the same folders (task "sid") is in `speech_commands_sid`. Both tasks are registered here as the
corpus spec `speech-commands:PATH`.

Setups:
- "superb12" (SUPERB KS): yes, no, up, down, left, right, on, off, stop, go, `_unknown_` (every
  other word; `Utterance.word` keeps the real one) and `_silence_`. SUPERB evaluates on the
  separate v0.01 test archive: pass it as `test_root`, and it replaces the list-based test split
  (the files of `testing_list.txt` are then left out, never moved into training).
- "full": every word folder is its own class (30 words in v0.01, 35 in v0.02); no silence class.

`_silence_` crops, and how they differ from s3prl: s3prl adds each whole noise file as one
training item *and* one validation item, samples classes in balance, draws a fresh random 1 s
offset at every load and applies a -3 dB gain to all audio. Here the crops are fixed utterances,
cut deterministically (the same corpus and fingerprint at every load), no gain is applied, and
each noise file is divided in time into disjoint regions - the first 80 % for training crops,
the next 10 % for validation, the last 10 % for test - so no stretch of noise is in two splits.
Each split gets about one class's share of crops (round(non-silence utterances / 11)), spread
evenly over its regions, round-robin over the noise files. Crops in one region may overlap.

Split rule (`published_split`, used only with `recompute_splits=True`): the speaker key is
SHA-1 hashed, taken mod 2^27 and scaled by 100 / (2^27 - 1): under 10 -> validation, under 20 ->
test, otherwise training, as in the dataset's original preparation script (and in s3prl).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile

from .corpus import CORPORA, NOISE_SPEAKER_PREFIX, SPLITS, Corpus, CorpusError, Utterance
from .loader_helpers import build_corpus, check_task, reject_unknown_options
from .speech_commands_layout import (
    CLIP_SECONDS,
    NOISE_FOLDER,
    SILENCE,
    SUPERB12_CLASSES,
    UNKNOWN,
    VERSION_BY_WORD_COUNT,
    Recording,
    corpus_name,
    is_test_archive,
    scan_test_archive,
    scan_word_folders,
    visible_entries,
)
from .speech_commands_sid import load_speech_commands_sid

SETUPS: tuple[str, ...] = ("superb12", "full")
LIST_FILES: dict[str, str] = {"validation": "validation_list.txt", "test": "testing_list.txt"}
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # the constant of the dataset's own split script
SAMPLE_RATE = 16_000
CLIP_SAMPLES = 16_000
# Fractions of each noise file's duration that feed each split's `_silence_` crops.
SILENCE_REGIONS: dict[str, tuple[float, float]] = {
    "train": (0.0, 0.8),
    "validation": (0.8, 0.9),
    "test": (0.9, 1.0),
}
ENV_VARIABLE = "SPEECH_UNLEARNING_SPEECH_COMMANDS"
# src/speech_unlearning/data/speech_commands.py -> parents[3] is the project root in an editable install.
SHARED_MINI_COPY = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "speech-commands-mini"
VERSION_BY_TEST_ARCHIVE_SIZE = {3081: "v0.01", 4890: "v0.02"}


def default_speech_commands_root() -> Path | None:
    """$SPEECH_UNLEARNING_SPEECH_COMMANDS, else the mini copy beside the project when it exists, else None."""
    configured = os.environ.get(ENV_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return SHARED_MINI_COPY if SHARED_MINI_COPY.is_dir() else None


def published_split(speaker: str, validation_percent: float = 10.0, test_percent: float = 10.0) -> str:
    """The dataset's own split rule for a speaker key: "train", "validation" or "test"."""
    digest = int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16)
    percentage = (digest % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percent:
        return "validation"
    if percentage < validation_percent + test_percent:
        return "test"
    return "train"


# ----------------------------------------------------------------------------------------------
# Splits.


def read_split_list(root: Path, split: str, known_ids: set[str]) -> set[str]:
    """Utterance ids listed in the `split` list file; every entry must name a clip in the tree."""
    list_path = root / LIST_FILES[split]
    if not list_path.is_file():
        raise CorpusError(
            f"{list_path}: split list not found (it ships with Speech Commands); restore it, or pass "
            "recompute_splits=True to apply the dataset's hash rule instead"
        )
    listed: set[str] = set()
    for number, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.strip().replace("\\", "/")
        if not entry:
            continue
        utt_id = entry[: -len(".wav")] if entry.endswith(".wav") else None
        if utt_id not in known_ids:
            raise CorpusError(
                f"{list_path}, line {number}: {entry!r} is not a clip of a word folder in {root}"
            )
        listed.add(utt_id)
    return listed


def assign_splits(root: Path, recordings: Sequence[Recording], recompute: bool) -> dict[str, str]:
    """utt_id -> split, from the list files (default) or from `published_split`."""
    if recompute:
        return {r.utt_id: published_split(r.speaker) for r in recordings}
    known = {r.utt_id for r in recordings}
    validation = read_split_list(root, "validation", known)
    test = read_split_list(root, "test", known)
    both = sorted(validation & test)
    if both:
        raise CorpusError(f"{root}: {len(both)} clip(s) are in both split lists, e.g. {both[0]}.wav")
    return {
        r.utt_id: "validation" if r.utt_id in validation else "test" if r.utt_id in test else "train"
        for r in recordings
    }


# ----------------------------------------------------------------------------------------------
# Silence crops.


def noise_lengths(root: Path) -> list[tuple[str, int]]:
    """(absolute path, length in samples at 16 kHz) of each noise file, read from the headers only."""
    folder = root / NOISE_FOLDER
    if not folder.is_dir():
        raise CorpusError(
            f"{folder}: noise folder not found; setup 'superb12' cuts its {SILENCE} class from it "
            "(use setup='full' for a corpus without one)"
        )
    lengths = []
    for entry in (e for e in visible_entries(folder) if e.is_file() and e.name.endswith(".wav")):
        try:
            header = soundfile.info(entry.path)
        except (RuntimeError, soundfile.LibsndfileError) as error:
            raise CorpusError(f"{entry.path}: unreadable noise file ({error})") from None
        lengths.append((entry.path, header.frames * SAMPLE_RATE // header.samplerate))
    if not lengths:
        raise CorpusError(f"{folder}: no .wav noise files")
    return lengths


def crop_starts(region_start: int, region_end: int, count: int) -> list[int]:
    """`count` 1 s crop starts spread evenly so every crop lies inside [region_start, region_end)."""
    last = region_end - CLIP_SAMPLES
    if count == 1:
        return [region_start]
    return [region_start + (j * (last - region_start)) // (count - 1) for j in range(count)]


def silence_crops(root: Path, crops_per_split: dict[str, int], label: int) -> list[Utterance]:
    """Deterministic 1 s `_silence_` crops, each split from its own time region of every noise file."""
    noise = noise_lengths(root)
    utterances = []
    for split, count in crops_per_split.items():
        low, high = SILENCE_REGIONS[split]
        regions = [(path, int(low * n), int(high * n)) for path, n in noise]
        regions = [(path, a, b) for path, a, b in regions if b - a >= CLIP_SAMPLES]
        if count and not regions:
            raise CorpusError(f"{root / NOISE_FOLDER}: noise files too short to cut {split} {SILENCE} crops")
        for index, (path, start, end) in enumerate(regions):
            share = count // len(regions) + (index < count % len(regions))  # round-robin
            if share == 0:
                continue
            stem = Path(path).stem
            for j, crop_start in enumerate(crop_starts(start, end, share)):
                utterances.append(
                    Utterance(
                        utt_id=f"{NOISE_FOLDER}/{stem}/{split}-{j:05d}",
                        path=path,
                        label=label,
                        speaker=f"{NOISE_SPEAKER_PREFIX}{stem}",
                        split=split,
                        word=SILENCE,
                        start=crop_start,
                        length=CLIP_SAMPLES,
                    )
                )
    return utterances


def training_noise_clips(noise_folder: str | Path, count: int, seed: int) -> np.ndarray:
    """(count, 16000) float32 1 s noise crops for augmentation, drawn from the training region
    (SILENCE_REGIONS["train"]) of every noise file, so no stretch of noise that a validation or
    test `_silence_` crop is cut from is ever mixed into a training clip."""
    from .audio import read_wav

    rng = np.random.default_rng(seed)
    regions = [(path, int(length * SILENCE_REGIONS["train"][1])) for path, length in noise_lengths(Path(noise_folder).parent)]
    regions = [(path, end) for path, end in regions if end >= CLIP_SAMPLES]
    if not regions:
        raise CorpusError(f"{noise_folder}: noise files too short to cut 1 s augmentation crops")
    clips = np.empty((count, CLIP_SAMPLES), dtype=np.float32)
    for index in range(count):
        path, end = regions[index % len(regions)]
        start = int(rng.integers(0, end - CLIP_SAMPLES + 1))
        clips[index] = read_wav(path, SAMPLE_RATE, start=start, length=CLIP_SAMPLES)
    return clips


# ----------------------------------------------------------------------------------------------
# Public entry points.


def _label_of(recording: Recording, setup: str, label_names: tuple[str, ...]) -> int:
    """full: the word folder; superb12: the folder if it is one of the 12 classes, else `_unknown_`."""
    if setup == "superb12" and recording.folder not in SUPERB12_CLASSES:
        return label_names.index(UNKNOWN)
    return label_names.index(recording.folder)


def _to_utterances(
    recordings: Iterable[Recording], splits: dict[str, str] | str, setup: str, label_names: tuple[str, ...]
) -> list[Utterance]:
    """Label the recordings; `splits` maps utt_id -> split, or is one split for all of them."""
    return [
        Utterance(
            utt_id=r.utt_id,
            path=r.path,
            label=_label_of(r, setup, label_names),
            speaker=r.speaker,
            split=splits if isinstance(splits, str) else splits[r.utt_id],
            word=r.word,
        )
        for r in recordings
    ]


def _reject_parent_folder(root: Path) -> None:
    """A common mistake: pointing at the folder above the corpus. Say which folder to pass."""
    nested = [
        Path(entry.path)
        for entry in visible_entries(root)
        if entry.is_dir() and any((Path(entry.path) / name).is_file() for name in LIST_FILES.values())
    ]
    if nested:
        raise CorpusError(
            f"{root}: not a Speech Commands root, but {nested[0]} looks like one; pass that folder"
        )


def _load_test_archive_only(root: Path, setup: str, test_root: str | Path | None) -> Corpus:
    """A root that is itself a test archive: a corpus with a test split only."""
    if any((root / name).is_file() for name in LIST_FILES.values()):
        raise CorpusError(f"{root}: mixes the test-archive folders {UNKNOWN}/{SILENCE} with split lists")
    if test_root is not None:
        raise CorpusError(f"{root} is itself a test archive; pass the main corpus as root")
    if setup != "superb12":
        raise CorpusError(f"{root}: a 12-class test archive can only be read with setup='superb12'")
    recordings = scan_test_archive(root)
    utterances = _to_utterances(recordings, "test", setup, SUPERB12_CLASSES)
    version = VERSION_BY_TEST_ARCHIVE_SIZE.get(len(recordings), "unknown")
    name = corpus_name(version, f"test-{setup}")
    info = {"version": version, "setup": setup, "layout": "test archive", "test_source": str(root)}
    return build_corpus(name, "kws", root, SUPERB12_CLASSES, utterances, CLIP_SECONDS, info)


def load_speech_commands(
    root: str | Path,
    setup: str = "superb12",
    test_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    recompute_splits: bool = False,
) -> Corpus:
    """Read a local Speech Commands copy (layouts in `speech_commands_layout`) as a "kws" Corpus.

    `setup` is "superb12" or "full". `test_root` points at the separate 12-class test archive,
    which then replaces the list-based test split (superb12 only). A root that is itself a test
    archive (class folders `_unknown_` / `_silence_`, no list files) is read as a test-only
    corpus. A missing list file is an error unless `recompute_splits=True`, which assigns every
    clip by `published_split` instead (the lists are then ignored). `cache_dir` is accepted for
    the common loader interface and unused: reading the folders is cheap, nothing is cached.
    Raises CorpusError naming the folder or file at fault.
    """
    del cache_dir  # nothing to cache
    if setup not in SETUPS:
        raise CorpusError(f"unknown Speech Commands setup {setup!r}; valid setups: {', '.join(SETUPS)}")
    recompute_splits = _as_flag("recompute_splits", recompute_splits)
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CorpusError(f"{root}: Speech Commands folder not found")
    if is_test_archive(root):
        return _load_test_archive_only(root, setup, test_root)
    archive = _checked_test_root(test_root, setup)
    if not any((root / name).is_file() for name in LIST_FILES.values()):
        _reject_parent_folder(root)

    recordings = scan_word_folders(root)
    splits = assign_splits(root, recordings, recompute_splits)
    word_folders = sorted({r.folder for r in recordings})
    label_names = SUPERB12_CLASSES if setup == "superb12" else tuple(word_folders)
    if archive is not None:  # the archive replaces the list-based test split; those files drop out
        recordings = [r for r in recordings if splits[r.utt_id] != "test"]
    utterances = _to_utterances(recordings, splits, setup, label_names)
    if archive is not None:
        utterances += _to_utterances(scan_test_archive(archive), "test", setup, label_names)

    version = VERSION_BY_WORD_COUNT.get(len(word_folders), "unknown")
    info = {
        "version": version,
        "setup": setup,
        "layout": "word folders",
        "words": len(word_folders),
        "splits_from": "published hash rule" if recompute_splits else "list files",
        "test_source": str(archive) if archive is not None else LIST_FILES["test"],
    }
    if setup == "superb12":
        utterances += _silence_for(root, utterances, skip_test=archive is not None)
        info["silence_regions"] = dict(SILENCE_REGIONS)
    if (root / NOISE_FOLDER).is_dir():
        info["noise_folder"] = str(root / NOISE_FOLDER)  # background noise for training augmentation
    name = corpus_name(version, setup)
    return build_corpus(name, "kws", root, label_names, utterances, CLIP_SECONDS, info)


def _as_flag(name: str, value: object) -> bool:
    """A boolean option, also accepted as the strings true/false/1/0/yes/no (from a command line)."""
    if isinstance(value, bool):
        return value
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise CorpusError(f"{name}: expected true or false, got {value!r}")


def _checked_test_root(test_root: str | Path | None, setup: str) -> Path | None:
    """The resolved test-archive folder, or None; the 12-class archive only fits setup superb12."""
    if test_root is None:
        return None
    if setup != "superb12":
        raise CorpusError(f"test_root={test_root}: the 12-class test archive needs setup='superb12'")
    return Path(test_root).expanduser().resolve()


def _silence_for(root: Path, utterances: Sequence[Utterance], skip_test: bool) -> list[Utterance]:
    """One class's share of silence crops per split: round(non-silence clips / 11)."""
    other_classes = len(SUPERB12_CLASSES) - 1
    counts = {
        split: round(sum(u.split == split for u in utterances) / other_classes)
        for split in SPLITS
        if not (skip_test and split == "test")  # the archive brings its own _silence_ clips
    }
    return silence_crops(root, counts, SUPERB12_CLASSES.index(SILENCE))


@CORPORA.register("speech-commands")
def load(task: str, path: str | None, cache_dir: Path, **options) -> Corpus:
    """Corpus spec `speech-commands:PATH`; kws options: setup, test_root, recompute_splits; sid: min_clips."""
    check_task("speech-commands", task, ("kws", "sid"))
    if path is None:
        raise CorpusError("corpus 'speech-commands' needs the folder of a local copy: speech-commands:PATH")
    if task == "sid":
        reject_unknown_options("speech-commands (sid)", options, ("min_clips",))
        return load_speech_commands_sid(path, **options)
    reject_unknown_options("speech-commands", options, ("setup", "test_root", "recompute_splits"))
    return load_speech_commands(path, cache_dir=cache_dir, **options)
