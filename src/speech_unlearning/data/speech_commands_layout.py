"""The Speech Commands folder layout: finding the clips of the official archives on disk.

Layout (the official archive, unchanged):

    ROOT/<word>/<speaker-hash>_nohash_<n>.wav    16 kHz mono, 1 s or shorter
    ROOT/validation_list.txt, ROOT/testing_list.txt   paths relative to ROOT; every other file trains
    ROOT/_background_noise_/*.wav                 about six long noise recordings

The separate test archives (v0.01: 3,081 files; v0.02: 4,890) are already in twelve class
folders, with unknown words prefixed by their word and `_silence_` holding ready-made 1 s clips:

    TEST/yes/0a7c2a8d_nohash_0.wav, TEST/_unknown_/backward_0c540988_nohash_0.wav, TEST/_silence_/...

Scanning yields `Recording`s (id, path, folder, word, speaker) before any label or split is
assigned; the keyword-spotting loader (`speech_commands`) and the speaker-ID view
(`speech_commands_sid`) both start from them, and name their corpus with `corpus_name`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .corpus import NOISE_SPEAKER_PREFIX, CorpusError

SUPERB_WORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
SUPERB12_CLASSES: tuple[str, ...] = SUPERB_WORDS + (UNKNOWN, SILENCE)
NOISE_FOLDER = "_background_noise_"
HASH_DIVIDER = "_nohash_"
VERSION_BY_WORD_COUNT = {30: "v0.01", 35: "v0.02"}
TEST_ARCHIVE_PREFIX = "test/"
CLIP_SECONDS = 1.0  # every clip of the archives lasts 1 s or less


@dataclass(frozen=True)
class Recording:
    """One clip found on disk, before labels are assigned."""

    utt_id: str  # path relative to its tree without ".wav" (prefixed "test/" for the test archive)
    path: str  # absolute path
    folder: str  # the class / word folder it sits in
    word: str  # the spoken word ("backward" for `_unknown_/backward_...`, "_silence_" for noise)
    speaker: str


def speaker_of(file_name: str, where: str | Path) -> str:
    """`0a7c2a8d_nohash_1.wav` -> `0a7c2a8d`; CorpusError naming `where` if the name does not fit."""
    key, divider, rest = file_name.partition(HASH_DIVIDER)
    index = rest[: -len(".wav")]
    if not divider or not key or not rest.endswith(".wav") or not index.isdigit():
        raise CorpusError(f"{where}: file name is not <speaker>{HASH_DIVIDER}<n>.wav as in Speech Commands")
    return key


def visible_entries(folder: Path) -> list[os.DirEntry]:
    """Entries of `folder` sorted by name, hidden ones (".DS_Store") left out."""
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _wav_files(folder: Path) -> list[os.DirEntry]:
    """The .wav files of a class folder; CorpusError for a nested folder (a layout mistake)."""
    files = []
    for entry in visible_entries(folder):
        if entry.is_dir():
            raise CorpusError(f"{entry.path}: unexpected sub-folder; a class folder holds only .wav files")
        if entry.name.endswith(".wav"):
            files.append(entry)
    return files


def is_test_archive(root: Path) -> bool:
    """True for a 12-class test archive (it has `_unknown_` or `_silence_` class folders)."""
    return (root / UNKNOWN).is_dir() or (root / SILENCE).is_dir()


def scan_word_folders(root: Path) -> list[Recording]:
    """Every clip of the main layout, word folders in name order (noise folder excluded)."""
    recordings = []
    word_folders = [e for e in visible_entries(root) if e.is_dir() and e.name != NOISE_FOLDER]
    for folder in word_folders:
        files = _wav_files(Path(folder.path))
        if not files:
            raise CorpusError(f"{folder.path}: word folder holds no .wav files")
        for entry in files:
            recordings.append(
                Recording(
                    utt_id=f"{folder.name}/{entry.name[:-4]}",
                    path=entry.path,
                    folder=folder.name,
                    word=folder.name,
                    speaker=speaker_of(entry.name, entry.path),
                )
            )
    if not recordings:
        raise CorpusError(
            f"{root}: no Speech Commands word folders found; expected <word>/<speaker>{HASH_DIVIDER}<n>.wav "
            "files with validation_list.txt and testing_list.txt beside them"
        )
    return recordings


def _archive_recording(folder: str, entry: os.DirEntry) -> Recording:
    """One clip of the 12-class test archive; unknown words carry their word as a name prefix."""
    utt_id = f"{TEST_ARCHIVE_PREFIX}{folder}/{entry.name[:-4]}"
    if folder == SILENCE:  # ready-made noise clips, freely named
        return Recording(utt_id, entry.path, folder, SILENCE, f"{NOISE_SPEAKER_PREFIX}test-archive")
    if folder == UNKNOWN:
        word, sep, rest = entry.name.partition("_")
        if not sep or not word:
            raise CorpusError(f"{entry.path}: expected <word>_<speaker>{HASH_DIVIDER}<n>.wav in {UNKNOWN}/")
        return Recording(utt_id, entry.path, folder, word, speaker_of(rest, entry.path))
    return Recording(utt_id, entry.path, folder, folder, speaker_of(entry.name, entry.path))


def scan_test_archive(archive: Path) -> list[Recording]:
    """Every clip of a separate test archive (12 class folders); its ids start with "test/"."""
    if not archive.is_dir():
        raise CorpusError(f"{archive}: test archive folder not found")
    folders = [e for e in visible_entries(archive) if e.is_dir()]
    unexpected = [e.path for e in folders if e.name not in SUPERB12_CLASSES]
    if unexpected or not folders:
        raise CorpusError(
            f"{archive}: not a 12-class Speech Commands test archive; it may hold only the folders "
            f"{', '.join(SUPERB12_CLASSES)}" + (f" (found {', '.join(unexpected)})" if unexpected else "")
        )
    return [_archive_recording(f.name, entry) for f in folders for entry in _wav_files(Path(f.path))]


def corpus_name(version: str, setup: str) -> str:
    """"speech-commands-v0.01-superb12", or without the version when it is not recognised."""
    return f"speech-commands-{version}-{setup}" if version != "unknown" else f"speech-commands-{setup}"
