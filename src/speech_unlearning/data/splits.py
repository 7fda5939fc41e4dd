"""Forget / retain splits: which training recordings a deletion request removes.

An `UnlearningSplit` names the forget set Df by utterance id (all from the training split of the
corpus it was made for); the retain set is always the rest of the training set, Dr = D \\ Df.
Four builders cover the protocols:

- `sample_split`: a seeded random fraction of the training set (the paper uses 1 % ... 10 %);
- `class_split`: every training item of one or more classes (a keyword in KWS, a speaker in SID);
- `speaker_split`: every training recording of some speakers, labels unchanged (a GDPR request
  in KWS; in SID it forgets the same items as `class_split`);
- `files_split`: an explicit list of utterance ids or audio paths inside the corpus root.

Splits are saved as JSON (`save_forget_split`) with the corpus fingerprint, so a split is never applied
to a different version of a corpus by mistake.
"""

from __future__ import annotations

import copy
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..config import ConfigError, require
from ..io import atomic_write_json, read_json
from .corpus import Corpus, CorpusError

FORGET_SPLIT_KINDS: tuple[str, ...] = ("sample", "class", "speaker", "files")
FORMAT_VERSION = 1
SHOWN_NAMES = 12  # how many valid names or bad items an error message lists before abbreviating


def listing(names: Sequence[str], limit: int = SHOWN_NAMES) -> str:
    """'a, b, c' or 'a, b, ... (and 40 more)' for error messages."""
    names = [str(name) for name in names]
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])}, ... (and {len(names) - limit} more)"


@dataclass(frozen=True)
class UnlearningSplit:
    """A forget set Df (sorted training utterance ids) for one version of one corpus."""

    kind: str  # "sample" | "class" | "speaker" | "files"
    corpus_name: str
    corpus_fingerprint: str
    forget_ids: tuple[str, ...]
    params: dict = field(default_factory=dict, hash=False)  # how Df was chosen (ratio+seed, classes, ...)

    def __post_init__(self) -> None:
        require(self.kind in FORGET_SPLIT_KINDS, "kind", f"{self.kind!r} is not one of {', '.join(FORGET_SPLIT_KINDS)}")
        given = () if isinstance(self.forget_ids, str) else tuple(self.forget_ids)
        require(
            not isinstance(self.forget_ids, str) and all(isinstance(i, str) for i in given),
            "forget_ids",
            "must be a list of utterance id strings",
        )
        forget_ids = tuple(sorted(set(given)))
        require(len(forget_ids) > 0, "forget_ids", "the forget set is empty")
        require(len(forget_ids) == len(given), "forget_ids", "contains duplicate ids")
        require(isinstance(self.params, dict), "params", "must be a mapping")
        if self.kind == "class":  # forgotten_labels reads the class names from here
            classes = self.params.get("classes")
            require(
                isinstance(classes, (list, tuple)) and len(classes) > 0 and all(isinstance(c, str) for c in classes),
                "params.classes",
                f"a class split needs a non-empty list of class names, got {classes!r}",
            )
        object.__setattr__(self, "forget_ids", forget_ids)

    # --- resolving against a corpus ------------------------------------------------------------

    def check_corpus(self, corpus: Corpus) -> None:
        """CorpusError unless `corpus` is the exact corpus version this split was made for."""
        if corpus.fingerprint != self.corpus_fingerprint:
            raise CorpusError(
                f"this split was made for another corpus version: {self.corpus_name!r} with fingerprint "
                f"{self.corpus_fingerprint[:12]}..., but corpus {corpus.name!r} has fingerprint "
                f"{corpus.fingerprint[:12]}...; rebuild the split for this corpus"
            )

    def forget_indices(self, corpus: Corpus) -> np.ndarray:
        """Sorted corpus positions of Df; CorpusError if an id is unknown or not a training item."""
        self.check_corpus(corpus)
        return resolve_training_ids(corpus, self.forget_ids)

    def retain_indices(self, corpus: Corpus) -> np.ndarray:
        """Sorted corpus positions of Dr = training set minus Df."""
        return np.setdiff1d(corpus.indices("train"), self.forget_indices(corpus), assume_unique=True)

    def validation_indices(self, corpus: Corpus) -> np.ndarray:
        """Sorted corpus positions of the validation split (untouched by unlearning)."""
        self.check_corpus(corpus)
        return corpus.indices("validation")

    def test_indices(self, corpus: Corpus) -> np.ndarray:
        """Sorted corpus positions of the test split (untouched by unlearning)."""
        self.check_corpus(corpus)
        return corpus.indices("test")

    def forgotten_labels(self, corpus: Corpus) -> list[int]:
        """Label indices the model should no longer recognise, sorted.

        A class split: its classes. A speaker split on a speaker-ID corpus: the labels of those
        speakers (there a speaker is a class). Otherwise [] (labels stay in use).
        """
        self.check_corpus(corpus)
        if self.kind == "class":
            return sorted(corpus.label_index(name) for name in self.params["classes"])
        if self.kind == "speaker" and corpus.task == "sid":
            return sorted({int(label) for label in corpus.labels[self.forget_indices(corpus)]})
        return []

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, including the format version; `from_dict` reverses it exactly."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "corpus_name": self.corpus_name,
            "corpus_fingerprint": self.corpus_fingerprint,
            "forget_ids": list(self.forget_ids),
            "params": copy.deepcopy(self.params),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "split") -> "UnlearningSplit":
        """Rebuild a split from `to_dict` output; ConfigError prefixed with `source` if malformed."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ConfigError(f"{source}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        expected = {"format_version", "kind", "corpus_name", "corpus_fingerprint", "forget_ids", "params"}
        if set(data) != expected:
            problems = [f"missing {sorted(expected - set(data))}"] if expected - set(data) else []
            problems += [f"unknown {sorted(set(data) - expected)}"] if set(data) - expected else []
            raise ConfigError(f"{source}: keys {'; '.join(problems)}")
        for key in ("kind", "corpus_name", "corpus_fingerprint"):
            if not isinstance(data[key], str):
                raise ConfigError(f"{source}: {key} must be a string, got {data[key]!r}")
        if not isinstance(data["forget_ids"], list):
            raise ConfigError(f"{source}: forget_ids must be a list")
        try:
            return cls(
                kind=data["kind"],
                corpus_name=data["corpus_name"],
                corpus_fingerprint=data["corpus_fingerprint"],
                forget_ids=tuple(data["forget_ids"]),
                params=copy.deepcopy(data["params"]),
            )
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None


def resolve_training_ids(corpus: Corpus, utterance_ids: Iterable[str]) -> np.ndarray:
    """Sorted positions of `utterance_ids`; CorpusError naming the first few unknown or non-training ids."""
    positions, unknown, not_training = [], [], []
    for utt_id in utterance_ids:
        position = corpus.index_of.get(utt_id)
        if position is None:
            unknown.append(utt_id)
        elif corpus.utterances[position].split != "train":
            not_training.append(f"{utt_id} ({corpus.utterances[position].split})")
        else:
            positions.append(position)
    if unknown:
        raise CorpusError(f"{corpus.name}: {len(unknown)} forget id(s) are not in the corpus: {listing(unknown, 5)}")
    if not_training:
        raise CorpusError(
            f"{corpus.name}: {len(not_training)} forget id(s) are not training items: {listing(not_training, 5)}"
        )
    return np.array(sorted(positions), dtype=np.int64)


# --- builders ---------------------------------------------------------------------------------


def _make_split(
    corpus: Corpus, kind: str, forget_positions: Iterable[int], params: dict, request: str
) -> UnlearningSplit:
    """Wrap training positions as a split, rejecting an empty Df or Df equal to the training set."""
    forget_positions = sorted(set(int(p) for p in forget_positions))
    if not forget_positions:
        raise CorpusError(f"{corpus.name}: {request} selects no training items (empty forget set)")
    if len(forget_positions) == len(corpus.indices("train")):
        raise CorpusError(
            f"{corpus.name}: {request} selects the whole training set ({len(forget_positions)} items); "
            "nothing would be retained (retraining from scratch is not unlearning)"
        )
    forget_ids = tuple(corpus.utterances[p].utt_id for p in forget_positions)
    return UnlearningSplit(kind, corpus.name, corpus.fingerprint, forget_ids, params)


def _as_name_list(values: str | Iterable[str], argument: str) -> list[str]:
    """A string or an iterable of strings -> a de-duplicated list, order kept; ConfigError if empty."""
    names = [values] if isinstance(values, str) else list(values)
    require(len(names) > 0, argument, "give at least one")
    require(all(isinstance(n, str) for n in names), argument, f"expected names (strings), got {names!r}")
    return list(dict.fromkeys(names))


def sample_split(corpus: Corpus, ratio: float, seed: int) -> UnlearningSplit:
    """Forget a seeded random `ratio` of the training set: round(ratio * n_train) items, at least 1.

    Deterministic for a given corpus and seed, in any process: the draw uses
    `numpy.random.default_rng(seed)` over the training ids in sorted order, so it does not depend
    on the order in which a loader lists the utterances.
    """
    require(
        isinstance(ratio, numbers.Real) and not isinstance(ratio, bool) and 0 < float(ratio) < 1,
        "ratio",
        f"{ratio!r} must be a fraction strictly between 0 and 1 (e.g. 0.05 for 5 %)",
    )
    require(
        isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and int(seed) >= 0,
        "seed",
        f"{seed!r} must be a non-negative integer",
    )
    train = corpus.indices("train")
    ids_in_order = sorted(corpus.utterances[i].utt_id for i in train)
    n_train = len(ids_in_order)
    size = max(1, int(round(float(ratio) * n_train)))
    chosen = np.random.default_rng(int(seed)).choice(n_train, size=min(size, n_train), replace=False)
    positions = [corpus.index_of[ids_in_order[k]] for k in chosen]
    params = {"ratio": float(ratio), "seed": int(seed)}
    return _make_split(corpus, "sample", positions, params, f"ratio {ratio} ({size} of {n_train})")


def class_split(corpus: Corpus, classes: str | Iterable[str]) -> UnlearningSplit:
    """Forget every training item of `classes` (label names: keywords in KWS, speakers in SID)."""
    names = _as_name_list(classes, "classes")
    unknown = [name for name in names if name not in corpus.label_names]
    if unknown:
        raise CorpusError(
            f"{corpus.name}: unknown class(es) {listing([repr(n) for n in unknown])}; "
            f"valid classes: {listing(corpus.label_names)}"
        )
    train = corpus.indices("train")
    labels = {corpus.label_names.index(name): name for name in names}
    positions = train[np.isin(corpus.labels[train], list(labels))]
    empty = [name for label, name in labels.items() if not np.any(corpus.labels[positions] == label)]
    if empty:
        raise CorpusError(f"{corpus.name}: class(es) {listing([repr(n) for n in empty])} have no training items")
    params = {"classes": sorted(names, key=corpus.label_names.index)}
    return _make_split(corpus, "class", positions, params, f"classes {listing(names)}")


def speaker_split(corpus: Corpus, speakers: str | Iterable[str]) -> UnlearningSplit:
    """Forget every training recording of `speakers`; the labels stay what they are (e.g. keywords)."""
    names = _as_name_list(speakers, "speakers")
    known = sorted(set(corpus.speakers.tolist()))
    unknown = [name for name in names if name not in set(known)]
    if unknown:
        raise CorpusError(
            f"{corpus.name}: unknown speaker(s) {listing([repr(n) for n in unknown])}; "
            f"valid speakers: {listing(known)}"
        )
    train = corpus.indices("train")
    positions = train[np.isin(corpus.speakers[train], names)]
    empty = [name for name in names if not np.any(corpus.speakers[positions] == name)]
    if empty:
        raise CorpusError(
            f"{corpus.name}: speaker(s) {listing([repr(n) for n in empty])} have no training recordings "
            "(all in validation / test)"
        )
    return _make_split(corpus, "speaker", positions, {"speakers": sorted(names)}, f"speakers {listing(names)}")


def files_split(corpus: Corpus, items: str | Iterable[str]) -> UnlearningSplit:
    """Forget the training items named by utterance id or audio path.

    A path is relative to `corpus.root` or absolute inside it; one that leaves the root (through
    `..` or an outside absolute path) is rejected. A path names every utterance cut from that
    file. Items that match nothing, or match only non-training items, are named in the error.
    """
    if isinstance(items, (str, os.PathLike)):
        items = [items]
    requested = _as_name_list([os.fspath(i) if isinstance(i, os.PathLike) else i for i in items], "items")
    by_path = _positions_by_path(corpus)
    positions: list[int] = []
    not_found: list[str] = []
    for item in requested:
        matches = [corpus.index_of[item]] if item in corpus.index_of else by_path.get(corpus_path(corpus, item), [])
        if not matches:
            not_found.append(item)
        positions.extend(matches)
    if not_found:
        raise CorpusError(
            f"{corpus.name}: {len(not_found)} item(s) are neither utterance ids nor audio files of the corpus: "
            f"{listing([repr(i) for i in not_found], 5)}"
        )
    non_training = [corpus.utterances[p] for p in positions if corpus.utterances[p].split != "train"]
    outside = sorted({f"{u.utt_id} ({u.split})" for u in non_training})
    if outside:
        raise CorpusError(
            f"{corpus.name}: {len(outside)} requested item(s) are not in the training set: {listing(outside, 5)}"
        )
    return _make_split(corpus, "files", positions, {"items": requested}, f"{len(requested)} listed item(s)")


def _normal_path(path: str | Path) -> str:
    """Absolute, normalised path text ('..' and '.' folded) without touching the file system."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def _positions_by_path(corpus: Corpus) -> dict[str, list[int]]:
    by_path: dict[str, list[int]] = {}
    for position, utterance in enumerate(corpus.utterances):
        by_path.setdefault(_normal_path(utterance.path), []).append(position)
    return by_path


def _is_inside(folder: str, path: str) -> bool:
    return os.path.commonpath([folder, path]) == folder


def corpus_path(corpus: Corpus, item: str) -> str:
    """`item` as a normalised absolute path inside `corpus.root`; CorpusError if it leaves the root.

    The check is lexical first ('..' folded); a path that reaches the root through a symbolic
    link (e.g. a linked data folder) is accepted when its resolved form lies in the resolved root.
    """
    root = _normal_path(corpus.root)
    candidate = _normal_path(item if os.path.isabs(item) else os.path.join(root, item))
    if _is_inside(root, candidate):
        return candidate
    real_root, real_candidate = os.path.realpath(root), os.path.realpath(candidate)
    if _is_inside(real_root, real_candidate):
        return os.path.join(root, os.path.relpath(real_candidate, real_root))
    raise CorpusError(f"{corpus.name}: {item!r} is outside the corpus root {root}; rejected")


# --- files ------------------------------------------------------------------------------------


def save_forget_split(split: UnlearningSplit, path: str | Path) -> Path:
    """Write `split` as JSON (with its format version) atomically; returns the path."""
    path = Path(path)
    atomic_write_json(path, split.to_dict())
    return path


def load_forget_split(path: str | Path, corpus: Corpus | None = None) -> UnlearningSplit:
    """Read a split saved by `save_forget_split`.

    A missing file raises FileNotFoundError, a corrupt or malformed one ConfigError, each naming
    the file. With `corpus`, the split must have been made for this corpus version and every
    forget id must be a training item of it (CorpusError naming the first few otherwise).
    """
    path = Path(path)
    try:
        data = read_json(path, "split file")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    split = UnlearningSplit.from_dict(data, source=f"split file {path}")
    if corpus is not None:
        try:
            split.forget_indices(corpus)
        except CorpusError as error:
            raise CorpusError(f"split file {path}: {error}") from None
    return split
