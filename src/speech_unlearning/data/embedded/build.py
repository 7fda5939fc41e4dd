"""Building the embedded corpus folder: list the clips, render, write the manifest, replace atomically.

`build_embedded_corpus` reuses a current corpus, refuses to overwrite a folder that is not one,
cleans up after interrupted builds and fills a temporary folder that replaces the old corpus
only once complete.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from ... import __version__
from ...config import require
from ...io import TMP_PREFIX, atomic_directory, atomic_write_json, clean_stale_temporaries, sha256_json
from .. import synth
from ..corpus import CorpusError, default_cache_dir
from .clips import SID_SPLIT_CODES, ClipJob, kws_clips, sid_clips
from .config import GENERATOR_VERSION, EmbeddedConfig
from .render import background_noise_files, render_all, write_file
from .verify import MANIFEST, embedded_corpus_is_current


def embedded_root(cache_dir: str | Path) -> Path:
    """Where the embedded corpus lives inside a cache folder."""
    return Path(cache_dir) / "corpora" / "embedded"


def check_voices(config: EmbeddedConfig) -> None:
    """ConfigError naming any variant or accent that the installed espeak-ng does not have."""
    missing_variants = sorted(set(config.variants) - set(synth.available_variants()))
    require(not missing_variants, "variants", f"not found in espeak-ng: {', '.join(missing_variants)}")
    missing_accents = sorted(set(config.accents) - set(synth.available_english_accents()))
    require(not missing_accents, "accents", f"not found in espeak-ng: {', '.join(missing_accents)}")


def _counts(kws_jobs: list[ClipJob], lists: dict[str, str], sid_text: str) -> dict[str, Any]:
    """Clips per split and per word (kws) and per split code (sid), for the manifest."""
    listed = {split: len(text.splitlines()) for split, text in lists.items()}
    kws_validation, kws_test = listed["kws/validation_list.txt"], listed["kws/testing_list.txt"]
    words: dict[str, int] = {}
    for job in kws_jobs:
        word = job.relpath.split("/")[1]
        words[word] = words.get(word, 0) + 1
    sid_codes = [line.split()[0] for line in sid_text.splitlines()]
    return {
        "kws": {
            "train": len(kws_jobs) - kws_validation - kws_test,
            "validation": kws_validation,
            "test": kws_test,
            "words": dict(sorted(words.items())),
        },
        "sid": {
            "speakers": len({line.split()[1].split("/")[0] for line in sid_text.splitlines()}),
            **{name: sid_codes.count(str(code)) for name, code in SID_SPLIT_CODES.items()},
        },
    }


def _build_into(folder: Path, config: EmbeddedConfig, workers: int, progress: bool) -> dict[str, Any]:
    """Fill `folder` with the corpus and its manifest; returns the manifest."""
    started = time.perf_counter()
    kws_jobs, kws_lists = kws_clips(config)
    sid_jobs, sid_lists = sid_clips(config)
    entries = dict(write_file(folder, relpath, text.encode()) for relpath, text in {**kws_lists, **sid_lists}.items())
    entries.update(write_file(folder, relpath, data) for relpath, data in background_noise_files(config).items())
    entries.update(render_all(folder, kws_jobs + sid_jobs, config.shards, workers, progress))
    files = dict(sorted(entries.items()))
    manifest = {
        "format": "speech-unlearning embedded corpus",
        "generator_version": GENERATOR_VERSION,
        "package_version": __version__,
        "espeak_ng_version": synth.espeak_version(),
        "config": config.record(),
        "counts": _counts(kws_jobs, kws_lists, sid_lists["sid/iden_split.txt"]),
        "build_seconds": round(time.perf_counter() - started, 2),
        "corpus_hash": sha256_json(files),
        "files": files,
    }
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def _clean_leftovers(root: Path, managed: bool) -> None:
    """Remove temporaries of interrupted builds beside `root`.

    The cache's own corpora folder holds only our artefacts, so every `.tmp-*` there is stale;
    beside a user-chosen folder only the temporaries named after it are touched.
    """
    if managed:
        clean_stale_temporaries(root.parent)
        return
    if root.parent.is_dir():
        prefixes = (f"{TMP_PREFIX}{root.name}-", f"{TMP_PREFIX}old-{root.name}-")
        for entry in root.parent.iterdir():
            if entry.name.startswith(prefixes) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


def _refuse_foreign_folder(root: Path) -> None:
    """CorpusError if `root` holds files but no manifest: a rebuild would delete someone's data."""
    if root.is_dir() and not (root / MANIFEST).is_file() and any(root.iterdir()):
        raise CorpusError(
            f"{root}: not empty and not an embedded corpus (no {MANIFEST}); "
            "choose an empty or new folder for the embedded corpus"
        )
    if root.exists() and not root.is_dir():
        raise CorpusError(f"{root}: exists and is not a folder")


def build_embedded_corpus(
    cache_dir: str | Path | None,
    config: EmbeddedConfig = EmbeddedConfig(),
    force: bool = False,
    progress: bool = True,
    *,
    root: str | Path | None = None,
    workers: int = 2,
) -> Path:
    """Make sure the embedded corpus for `config` exists; returns its root.

    The root is `root` when given, else `embedded_root(cache_dir)` (`cache_dir` None: the
    default cache). An existing corpus is reused when `embedded_corpus_is_current` (unless
    `force`); otherwise it is rebuilt in a temporary folder that replaces the old one only when
    complete. `workers` processes render the clips (the files do not depend on it). Raises
    SynthError when espeak-ng is unavailable, ConfigError for a voice the installed espeak-ng
    lacks, and CorpusError when `root` is a non-empty folder that is not an embedded corpus
    (it would be replaced).
    """
    managed = root is None
    if root is None:
        root = embedded_root(cache_dir if cache_dir is not None else default_cache_dir())
    root = Path(root).expanduser()
    require(workers >= 1, "workers", f"must be >= 1, got {workers}")
    _clean_leftovers(root, managed)
    if not force and embedded_corpus_is_current(root, config):
        return root
    _refuse_foreign_folder(root)
    check_voices(config)
    with atomic_directory(root) as folder:
        _build_into(folder, config, workers, progress)
    return root
