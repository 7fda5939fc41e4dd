"""Your own recordings in any folder layout, listed in a CSV manifest: corpus spec `manifest:PATH.csv`.

    path,label,speaker,split
    clips/alice/yes_01.wav,yes,alice,train
    clips/bob/no_07.flac,no,bob,test

- `path`: an audio file soundfile reads (WAV, FLAC, OGG, ...; any rate, resampled to 16 kHz);
  a relative path is resolved against the manifest's folder, which is the corpus root.
- `label`: the class (the keyword) for task "kws"; for task "sid" the classes are the speakers.
- `speaker`: who speaks; speaker requests (`forget --speaker`) select by it.
- `split`: train, validation or test.
Extra columns are ignored. Class names are sorted (as the other loaders do); the utterance id is
the path as written, without its extension. Clips are padded or cropped to 1 s, like every other
corpus here (`clip_seconds`, a loader option for Python callers, changes that).

Checks, each a CorpusError naming the manifest and the line: a missing column, an empty field,
an unknown split, a missing audio file, a path listed twice. An unreadable or corrupt audio file
is named by an AudioError when its features are first computed, as for every loader.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .corpus import CORPORA, SPLITS, Corpus, CorpusError, Utterance
from .loader_helpers import build_corpus, check_task, reject_unknown_options

COLUMNS = ("path", "label", "speaker", "split")
CLIP_SECONDS = 1.0


def read_manifest_rows(manifest: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for every data line; CorpusError for a missing file or column."""
    if not manifest.is_file():
        raise CorpusError(f"{manifest}: manifest not found (expected a CSV file with columns {', '.join(COLUMNS)})")
    with open(manifest, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets often write a BOM
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in COLUMNS if name not in header]
        if missing:
            raise CorpusError(
                f"{manifest}: missing column(s) {', '.join(missing)}; the header must name {', '.join(COLUMNS)} "
                f"(found: {', '.join(header) or 'no header'})"
            )
        reader.fieldnames = header
        rows = [(reader.line_num, {key: (value or "").strip() for key, value in row.items() if key}) for row in reader]
    if not rows:
        raise CorpusError(f"{manifest}: lists no recordings")
    return rows


def checked_row(manifest: Path, line: int, row: dict[str, str]) -> tuple[str, str, str, str, Path]:
    """(utt_id, label, speaker, split, resolved audio path) of one row, or CorpusError naming the line."""
    where = f"{manifest}, line {line}"
    empty = [name for name in COLUMNS if not row.get(name)]
    if empty:
        raise CorpusError(f"{where}: empty {', '.join(empty)}")
    if row["split"] not in SPLITS:
        raise CorpusError(f"{where}: unknown split {row['split']!r}; valid splits: {', '.join(SPLITS)}")
    written = Path(row["path"])
    audio = written if written.is_absolute() else manifest.parent / written
    if not audio.is_file():
        raise CorpusError(f"{where}: audio file not found: {audio}")
    utt_id = str(written.with_suffix("")).replace("\\", "/")
    return utt_id, row["label"], row["speaker"], row["split"], audio.resolve()


def load_manifest(manifest: str | Path, task: str, clip_seconds: float = CLIP_SECONDS) -> Corpus:
    """The corpus a manifest lists, for `task` ("kws": classes from `label`; "sid": from `speaker`)."""
    check_task("manifest", task, ("kws", "sid"))
    if not clip_seconds > 0:
        raise CorpusError(f"manifest: clip_seconds must be positive, got {clip_seconds}")
    manifest = Path(manifest).expanduser().resolve()
    entries, first_line = [], {}
    for line, row in read_manifest_rows(manifest):
        utt_id, label, speaker, split, audio = checked_row(manifest, line, row)
        if utt_id in first_line:
            raise CorpusError(f"{manifest}, line {line}: {row['path']} is already listed on line {first_line[utt_id]}")
        first_line[utt_id] = line
        entries.append((utt_id, label, speaker, split, audio))
    label_names = tuple(sorted({label if task == "kws" else speaker for _, label, speaker, _, _ in entries}))
    utterances = [
        Utterance(
            utt_id=utt_id,
            path=str(audio),
            label=label_names.index(label if task == "kws" else speaker),
            speaker=speaker,
            split=split,
            word=label,
        )
        for utt_id, label, speaker, split, audio in entries
    ]
    info = {"manifest": str(manifest), "speakers": sorted({u.speaker for u in utterances})}
    return build_corpus(f"manifest-{manifest.stem}-{task}", task, manifest.parent, label_names, utterances, clip_seconds, info)


@CORPORA.register("manifest")
def load(task: str, path: str | None, cache_dir: Path, **options) -> Corpus:
    """Corpus spec `manifest:PATH.csv`; option clip_seconds (default 1.0)."""
    check_task("manifest", task, ("kws", "sid"))
    reject_unknown_options("manifest", options, ("clip_seconds",))
    if path is None:
        raise CorpusError("corpus 'manifest' needs the CSV file: manifest:PATH.csv")
    return load_manifest(path, task, **options)
