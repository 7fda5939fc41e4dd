"""The manifest of an embedded corpus, and checking a corpus folder against it.

`ROOT/manifest.json` records the config, the versions, every file's sha256 and size and a hash
of that file list. `verify_embedded_corpus` names every missing, resized, altered or unlisted
file; `embedded_corpus_is_current` is the quick check (no hashing) that decides reuse.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from ...io import read_json, sha256_file, sha256_json
from .config import GENERATOR_VERSION, EmbeddedConfig

MANIFEST = "manifest.json"


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of the corpus at `root`; FileNotFoundError / ValueError naming the file."""
    manifest = read_json(Path(root) / MANIFEST, "embedded corpus manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ValueError(f"{Path(root) / MANIFEST}: not an embedded corpus manifest (no file list)")
    return manifest


def _files_on_disk(root: Path) -> Iterable[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            yield Path(folder) / name


def verify_embedded_corpus(root: str | Path, full: bool = True) -> list[str]:
    """Problems found in the corpus at `root`, each naming its file; [] when it is intact.

    Checks that the manifest is readable and consistent, that every listed file exists with its
    recorded size, that no unlisted file was added and, when `full`, every file's sha256.
    """
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, ValueError) as error:
        return [str(error)]
    files: dict[str, dict[str, Any]] = manifest["files"]
    problems = []
    if manifest.get("corpus_hash") != sha256_json(files):
        problems.append(f"{root / MANIFEST}: file list does not match its corpus hash (manifest edited)")
    for relpath, record in files.items():
        path = root / relpath
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != record.get("bytes"):
            problems.append(f"{path}: {path.stat().st_size} bytes, the manifest records {record.get('bytes')}")
        elif full and sha256_file(path) != record.get("sha256"):
            problems.append(f"{path}: content differs from the manifest (sha256 mismatch)")
    for path in sorted(_files_on_disk(root)):
        relpath = path.relative_to(root).as_posix()
        if relpath != MANIFEST and relpath not in files:
            problems.append(f"{path}: not part of the corpus (absent from the manifest)")
    return problems


def embedded_corpus_is_current(root: str | Path, config: EmbeddedConfig) -> bool:
    """Quick reuse check: manifest readable, same generator and config, files present with their sizes.

    File contents are not hashed here (that is `verify_embedded_corpus(full=True)`).
    """
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, ValueError):
        return False
    if manifest.get("generator_version") != GENERATOR_VERSION or manifest.get("config") != config.record():
        return False
    return not verify_embedded_corpus(root, full=False)
