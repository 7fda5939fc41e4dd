"""The common interface every corpus loader returns.

A `Corpus` is an immutable list of `Utterance`s for one task ("kws" keyword spotting or "sid"
speaker identification), with integer labels into `label_names` and a train / validation / test
assignment. Loaders register themselves in `CORPORA` under the name used in corpus specs:
`embedded`, `fsdd`, `speech-commands:PATH`, `voxceleb1:PATH`, ...

This module is the bottom of the data layer: every loader imports it, and it imports no
loader. `load_corpus`, which needs the registry filled, lives in `loaders`, the one module
that imports every loader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from ..registry import Registry

Task = Literal["kws", "sid"]
TASKS: tuple[str, ...] = ("kws", "sid")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
# Speaker keys of clips that no person spoke (Speech Commands' `_silence_` crops of background noise).
NOISE_SPEAKER_PREFIX = "noise:"


def is_person(speaker: str) -> bool:
    """False for the pseudo-speaker of noise clips, which no speaker-level request can target."""
    return not speaker.startswith(NOISE_SPEAKER_PREFIX)


class CorpusError(ValueError):
    """A corpus folder, list file or request is not what was expected; names the culprit."""


@dataclass(frozen=True)
class Utterance:
    """One labelled recording (or a segment of one, for `_silence_` crops)."""

    utt_id: str  # unique within the corpus, e.g. "yes/0a7c2a8d_nohash_0"
    path: str  # absolute path of the audio file
    label: int  # index into Corpus.label_names
    speaker: str  # speaker key: the Speech Commands hash, the VoxCeleb id, the FSDD name
    split: str  # "train" | "validation" | "test"
    word: str = ""  # spoken word or phrase when known (KWS: the source folder, e.g. "backward")
    start: int = 0  # first sample of the segment, at 16 kHz
    length: int | None = None  # segment length in samples at 16 kHz; None = whole file


@dataclass(frozen=True)
class Corpus:
    """A loaded corpus: utterances with labels and splits, and how to featurise them."""

    name: str  # e.g. "embedded-kws", "speech-commands-v0.01-superb12", "fsdd-sid"
    task: str  # "kws" | "sid"
    root: Path
    label_names: tuple[str, ...]
    utterances: tuple[Utterance, ...]
    clip_seconds: float  # every clip is padded / cropped to this length for the models
    fingerprint: str  # changes whenever files, labels or splits change; keys the caches
    sample_rate: int = 16_000
    info: dict = field(default_factory=dict, compare=False)  # loader-specific notes

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise CorpusError(f"{self.name}: unknown task {self.task!r}; valid tasks: {', '.join(TASKS)}")
        seen: set[str] = set()
        for utt in self.utterances:
            if utt.utt_id in seen:
                raise CorpusError(f"{self.name}: duplicate utterance id {utt.utt_id!r} ({utt.path})")
            seen.add(utt.utt_id)
            if utt.split not in SPLITS:
                raise CorpusError(f"{self.name}: utterance {utt.utt_id!r} has unknown split {utt.split!r}")
            if not 0 <= utt.label < len(self.label_names):
                raise CorpusError(f"{self.name}: utterance {utt.utt_id!r} has label {utt.label} out of range")

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @cached_property
    def labels(self) -> np.ndarray:
        """(N,) int64 labels in utterance order."""
        return np.array([u.label for u in self.utterances], dtype=np.int64)

    @cached_property
    def speakers(self) -> np.ndarray:
        """(N,) speaker keys in utterance order."""
        return np.array([u.speaker for u in self.utterances])

    @cached_property
    def index_of(self) -> dict[str, int]:
        """Utterance id -> position."""
        return {u.utt_id: i for i, u in enumerate(self.utterances)}

    def indices(self, split: str) -> np.ndarray:
        """Sorted positions of the utterances in `split` ("train", "validation" or "test")."""
        if split not in SPLITS:
            raise CorpusError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        return np.array([i for i, u in enumerate(self.utterances) if u.split == split], dtype=np.int64)

    def label_index(self, name: str) -> int:
        """Position of class `name` in label_names; CorpusError listing valid names otherwise."""
        try:
            return self.label_names.index(name)
        except ValueError:
            raise CorpusError(
                f"{self.name}: unknown class {name!r}; valid classes: {', '.join(self.label_names)}"
            ) from None


CorpusLoader = Callable[..., Corpus]
CORPORA: Registry[CorpusLoader] = Registry("corpus")


def default_cache_dir() -> Path:
    """Where corpora, features and models are cached: $SPEECH_UNLEARNING_CACHE or ~/.cache/speech_unlearning."""
    configured = os.environ.get("SPEECH_UNLEARNING_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "speech_unlearning"


def parse_corpus_spec(spec: str) -> tuple[str, str | None]:
    """"speech-commands:/data/sc" -> ("speech-commands", "/data/sc"); "embedded" -> ("embedded", None)."""
    name, sep, path = spec.partition(":")
    return name.strip(), (path.strip() or None) if sep else None

