"""A Hugging Face `datasets` folder written by `save_to_disk`: corpus spec `hf-dataset:DIR`.

- Splits: the folder holds a DatasetDict whose splits are named train, validation and test (any
  subset of them), or a single Dataset with a `split` column holding those names.
- Audio: the first column of type `Audio` (else a column named `audio`), read without decoding:
  embedded bytes are written once to the cache (`<cache>/hf-datasets/...`, one file per row,
  built atomically); a row that only holds a path is read from that path (relative paths are
  resolved against DIR). Decoding is then the toolkit's own (`read_wav`: any rate to 16 kHz).
- Labels: task "kws" reads the `label` column (a ClassLabel keeps its names and their order;
  plain strings or integers are sorted); task "sid" reads the speaker column, which is the first
  of `speaker`, `speaker_id`, `client_id` present. Without one, kws utterances have the speaker
  "unknown" (no speaker requests are then possible).
- Utterance ids are "<split>/<row>" (row number within the split, 6 digits).

Checks, each a CorpusError naming the folder and the culprit: not a save_to_disk folder, an
unknown split name, a missing column, an empty label, a row whose audio file is missing; an
unreadable recording is named by an AudioError when its features are first computed. Clips are
padded or cropped to 1 s (option `clip_seconds` for Python callers).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator

from ..io import atomic_directory, sha256_json
from .corpus import CORPORA, SPLITS, Corpus, CorpusError, Utterance
from .loader_helpers import build_corpus, check_task, reject_unknown_options

LABEL_COLUMN = "label"
SPLIT_COLUMN = "split"
SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id")
NO_SPEAKER = "unknown"
CLIP_SECONDS = 1.0
BATCH_ROWS = 256  # rows read from Arrow at a time while extracting audio
DONE_FILE = "complete.json"


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """`datasets` without its progress bars (restored afterwards): loading a corpus reports itself."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


def open_dataset(folder: Path) -> dict[str, Any]:
    """{split name: Dataset} of a save_to_disk folder; CorpusError for anything else."""
    import datasets

    if not folder.is_dir():
        raise CorpusError(f"{folder}: folder not found (expected a datasets save_to_disk folder)")
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError) as error:
        raise CorpusError(f"{folder}: not a datasets save_to_disk folder ({error})") from None
    if isinstance(loaded, datasets.DatasetDict):
        unknown = sorted(set(loaded) - set(SPLITS))
        if unknown:
            raise CorpusError(
                f"{folder}: unknown split(s) {', '.join(unknown)}; valid splits: {', '.join(SPLITS)} "
                "(rename them, e.g. DatasetDict({'validation': d['dev'], ...}).save_to_disk(...))"
            )
        return dict(loaded)
    if SPLIT_COLUMN not in loaded.column_names:
        raise CorpusError(f"{folder}: a single Dataset needs a {SPLIT_COLUMN!r} column (or save a DatasetDict)")
    names = set(loaded.unique(SPLIT_COLUMN))
    if names - set(SPLITS):
        raise CorpusError(
            f"{folder}: unknown split(s) {', '.join(sorted(map(str, names - set(SPLITS))))} in column "
            f"{SPLIT_COLUMN!r}; valid splits: {', '.join(SPLITS)}"
        )
    values = list(loaded[SPLIT_COLUMN])  # select by position: filter() would decode every row's audio
    return {
        name: loaded.select([row for row, value in enumerate(values) if value == name]) for name in SPLITS if name in names
    }


def audio_column(folder: Path, dataset: Any) -> str:
    """The first Audio-typed column, else a column called "audio"."""
    from datasets import Audio

    typed = [name for name, feature in dataset.features.items() if isinstance(feature, Audio)]
    if typed:
        return typed[0]
    if "audio" in dataset.column_names:
        return "audio"
    raise CorpusError(f"{folder}: no audio column (a column of type Audio, or named 'audio')")


def class_names(folder: Path, splits: dict[str, Any], column: str) -> tuple[tuple[str, ...], bool]:
    """(class names, whether they come from a ClassLabel) of `column` across every split."""
    from datasets import ClassLabel

    for name, dataset in splits.items():
        if column not in dataset.column_names:
            raise CorpusError(f"{folder}: split {name!r} has no {column!r} column (columns: {', '.join(dataset.column_names)})")
    feature = next(iter(splits.values())).features[column]
    if isinstance(feature, ClassLabel):
        return tuple(feature.names), True
    values = {str(value) for dataset in splits.values() for value in dataset.unique(column)}
    if "" in values or "None" in values:
        raise CorpusError(f"{folder}: column {column!r} has empty values")
    return tuple(sorted(values)), False


def speaker_column(dataset: Any) -> str | None:
    return next((name for name in SPEAKER_COLUMNS if name in dataset.column_names), None)


def audio_rows(dataset: Any, column: str) -> Iterator[dict]:
    """Each row's audio as {"bytes", "path"}, never decoded (no audio codec library needed)."""
    from datasets import Audio

    raw = dataset.select_columns([column]).cast_column(column, Audio(decode=False))
    for batch in raw.iter(batch_size=BATCH_ROWS):
        yield from batch[column]


def extraction_folder(folder: Path, splits: dict[str, Any], column: str, cache_dir: Path) -> Path:
    """Where this dataset's embedded audio is written: keyed by the datasets' own fingerprints."""
    key = sha256_json({"folder": folder.name, "column": column, "splits": {n: d._fingerprint for n, d in splits.items()}})
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", folder.name)
    return cache_dir / "hf-datasets" / f"{safe_name}-{key[:16]}"


def audio_paths(folder: Path, splits: dict[str, Any], column: str, cache_dir: Path) -> dict[str, list[str]]:
    """{split: one audio path per row}: embedded bytes extracted once (atomically), stored paths checked."""
    target = extraction_folder(folder, splits, column, cache_dir)
    if (target / DONE_FILE).is_file():
        return row_paths(folder, splits, column, target, staging=None)
    with atomic_directory(target) as staging:
        paths = row_paths(folder, splits, column, target, staging)
        (staging / DONE_FILE).write_text('{"complete": true}\n', encoding="utf-8")
    return paths


def row_paths(folder: Path, splits: dict[str, Any], column: str, target: Path, staging: Path | None) -> dict[str, list[str]]:
    """Each row's audio path; embedded bytes are written under `staging` (None: already extracted)."""
    paths: dict[str, list[str]] = {}
    for name, dataset in splits.items():
        paths[name] = []
        for row, audio in enumerate(audio_rows(dataset, column)):
            audio = audio or {}
            if audio.get("bytes"):
                file_name = f"{row:06d}{Path(audio.get('path') or '').suffix or '.wav'}"
                if staging is not None:  # written as read, so memory holds one batch, not the dataset
                    (staging / name).mkdir(exist_ok=True)
                    (staging / name / file_name).write_bytes(audio["bytes"])
                paths[name].append(str(target / name / file_name))
            elif audio.get("path"):
                stored = Path(audio["path"])
                stored = stored if stored.is_absolute() else folder / stored
                if not stored.is_file():
                    raise CorpusError(f"{folder}: split {name!r} row {row}: audio file not found: {stored}")
                paths[name].append(str(stored.resolve()))
            else:
                raise CorpusError(f"{folder}: split {name!r} row {row}: no audio (neither bytes nor a path)")
    return paths


def load_hf_dataset(folder: str | Path, task: str, cache_dir: Path, clip_seconds: float = CLIP_SECONDS) -> Corpus:
    """The corpus a save_to_disk folder holds, for `task` (see the module docstring)."""
    check_task("hf-dataset", task, ("kws", "sid"))
    with quiet_datasets():
        return read_hf_dataset(Path(folder).expanduser().resolve(), task, cache_dir, clip_seconds)


def read_hf_dataset(folder: Path, task: str, cache_dir: Path, clip_seconds: float) -> Corpus:
    splits = open_dataset(folder)
    first = next(iter(splits.values()))
    column = audio_column(folder, first)
    speakers_from = speaker_column(first)
    if task == "sid" and speakers_from is None:
        raise CorpusError(f"{folder}: task sid needs a speaker column ({', '.join(SPEAKER_COLUMNS)})")
    label_column = LABEL_COLUMN if task == "kws" else speakers_from
    label_names, indexed = class_names(folder, splits, label_column)
    paths = audio_paths(folder, splits, column, cache_dir)
    words = word_names(splits)
    utterances = []
    for name, dataset in splits.items():
        labels = dataset[label_column]
        speakers = dataset[speakers_from] if speakers_from else [NO_SPEAKER] * len(dataset)
        for row, (label, speaker, path) in enumerate(zip(labels, speakers, paths[name])):
            label_index = int(label) if indexed else label_names.index(str(label))
            word = words[name][row] if words else ""
            utterances.append(Utterance(f"{name}/{row:06d}", path, label_index, str(speaker), name, word))
    info = {"dataset": str(folder), "audio_column": column, "speaker_column": speakers_from}
    return build_corpus(f"hf-dataset-{folder.name}-{task}", task, folder, label_names, utterances, clip_seconds, info)


def word_names(splits: dict[str, Any]) -> dict[str, list[str]] | None:
    """{split: the `label` column as names} (ClassLabel indices turned into their names), or None."""
    from datasets import ClassLabel

    first = next(iter(splits.values()))
    if LABEL_COLUMN not in first.column_names:
        return None
    feature = first.features[LABEL_COLUMN]
    as_name = feature.int2str if isinstance(feature, ClassLabel) else str
    return {name: [as_name(value) for value in dataset[LABEL_COLUMN]] for name, dataset in splits.items()}


@CORPORA.register("hf-dataset")
def load(task: str, path: str | None, cache_dir: Path, **options) -> Corpus:
    """Corpus spec `hf-dataset:DIR` (a save_to_disk folder); option clip_seconds (default 1.0)."""
    check_task("hf-dataset", task, ("kws", "sid"))
    reject_unknown_options("hf-dataset", options, ("clip_seconds",))
    if path is None:
        raise CorpusError("corpus 'hf-dataset' needs the folder: hf-dataset:DIR")
    return load_hf_dataset(path, task, cache_dir, **options)
