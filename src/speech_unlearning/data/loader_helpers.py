"""What every corpus loader shares: argument checks and the fingerprinted `Corpus` it returns.

Each loader (Speech Commands, VoxCeleb1, FSDD, CSV manifest, Hugging Face folder) checks the
task and options it was given the same way and ends with `build_corpus`, so that every corpus's
fingerprint is computed by one rule.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..io import sha256_json
from .corpus import SPLITS, Corpus, CorpusError, Utterance


def check_task(corpus: str, task: str, supported: Sequence[str]) -> None:
    """CorpusError unless `task` is one the corpus provides."""
    if task not in supported:
        raise CorpusError(
            f"corpus {corpus!r} provides the task(s) {', '.join(supported)}, not {task!r}"
        )


def reject_unknown_options(corpus: str, options: dict, valid: Iterable[str]) -> None:
    """CorpusError naming any option the loader does not understand (a typo never passes silently)."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise CorpusError(
            f"corpus {corpus!r}: unknown option(s) {', '.join(unknown)}; valid options: "
            f"{', '.join(sorted(valid)) or '(none)'}"
        )


def file_sizes(paths: Iterable[str]) -> dict[str, int]:
    """Byte size of each distinct path (one stat each, no decoding); CorpusError naming a missing file."""
    sizes: dict[str, int] = {}
    for path in paths:
        if path not in sizes:
            try:
                sizes[path] = os.stat(path).st_size
            except OSError as error:
                raise CorpusError(f"{path}: cannot read file ({error.strerror})") from None
    return sizes


def build_corpus(
    name: str,
    task: str,
    root: Path,
    label_names: Sequence[str],
    utterances: Sequence[Utterance],
    clip_seconds: float,
    info: dict,
    sizes: dict[str, int] | None = None,
) -> Corpus:
    """A Corpus whose fingerprint covers what changes the data: ids, labels, splits, segments,
    class names, clip length and every file's byte size.

    It is cheap by design (one stat per file, no audio decoding) and independent of where the
    corpus lies on disk, so moving a copy keeps its feature caches valid. `sizes` (path -> bytes)
    spares the stat calls when the loader has already made them.
    """
    if sizes is None:
        sizes = file_sizes(u.path for u in utterances)
    rows = [[u.utt_id, u.label, u.split, u.start, u.length, sizes[u.path]] for u in utterances]
    fingerprint = sha256_json(
        {"name": name, "task": task, "labels": list(label_names), "clip_seconds": clip_seconds, "rows": rows}
    )
    per_class = np.bincount([u.label for u in utterances], minlength=len(label_names))
    info = {
        **info,
        "counts": {split: sum(u.split == split for u in utterances) for split in SPLITS},
        "class_counts": dict(zip(label_names, per_class.tolist())),
    }
    return Corpus(
        name=name,
        task=task,
        root=root,
        label_names=tuple(label_names),
        utterances=tuple(utterances),
        clip_seconds=clip_seconds,
        fingerprint=fingerprint,
        info=info,
    )
