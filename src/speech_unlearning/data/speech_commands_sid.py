"""Speech Commands read as a speaker-identification corpus (task "sid" of `speech-commands:PATH`).

The same word folders as for keyword spotting, read as a speaker-ID corpus. The speaker is the
hash that starts every file name; speakers with fewer than `min_clips` clips (default 20) are
dropped, and each kept speaker's clips are split across train / validation / test (15 % / 15 %
of each speaker's clips, at least 2 each, for test / validation), as SUPERB SID splits VoxCeleb1
by utterance within every speaker. The list files are not used (they split speakers, which a
speaker-ID test cannot) and there is no `_silence_` class. Which clip goes where is fixed by a
hash of its id, so the split is the same at every load and on every machine. On the 3,458-clip
mini corpus the default keeps 42 speakers and 2,130 clips.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from .corpus import Corpus, CorpusError, Utterance
from .loader_helpers import build_corpus
from .speech_commands_layout import (
    CLIP_SECONDS,
    VERSION_BY_WORD_COUNT,
    Recording,
    corpus_name,
    is_test_archive,
    scan_word_folders,
)

SID_MIN_CLIPS = 20  # speakers with fewer clips are dropped from the speaker-ID view
SID_HELD_OUT_SHARE = 0.15  # of each speaker's clips, for test and again for validation
SID_MIN_HELD_OUT = 2  # clips per speaker in each of test and validation, at least


def _clip_order_key(utt_id: str) -> str:
    """A fixed pseudo-random order of a speaker's clips (the same everywhere, unlike a seeded RNG)."""
    return hashlib.sha1(utt_id.encode("utf-8")).hexdigest()


def per_speaker_splits(recordings: Sequence[Recording]) -> dict[str, str]:
    """utt_id -> split, splitting every speaker's clips: test, then validation, then train."""
    by_speaker: dict[str, list[str]] = {}
    for recording in recordings:
        by_speaker.setdefault(recording.speaker, []).append(recording.utt_id)
    splits: dict[str, str] = {}
    for utt_ids in by_speaker.values():
        ordered = sorted(utt_ids, key=_clip_order_key)
        held_out = max(SID_MIN_HELD_OUT, round(SID_HELD_OUT_SHARE * len(ordered)))
        for position, utt_id in enumerate(ordered):
            splits[utt_id] = "test" if position < held_out else "validation" if position < 2 * held_out else "train"
    return splits


def load_speech_commands_sid(root: str | Path, min_clips: int = SID_MIN_CLIPS) -> Corpus:
    """Read a Speech Commands copy as a speaker-identification Corpus (see the module docstring).

    Every word folder counts (the clip's word is kept in `Utterance.word`); `min_clips` sets
    which speakers are kept. Raises CorpusError naming the folder at fault, or when too few
    speakers are left to identify.
    """
    try:
        min_clips = int(min_clips)
    except (TypeError, ValueError):
        raise CorpusError(f"min_clips: expected an integer, got {min_clips!r}") from None
    if min_clips < 2 * SID_MIN_HELD_OUT + 1:
        raise CorpusError(f"min_clips: must be at least {2 * SID_MIN_HELD_OUT + 1} (a train, validation and test share each), got {min_clips}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CorpusError(f"{root}: Speech Commands folder not found")
    if is_test_archive(root):
        raise CorpusError(f"{root}: a 12-class test archive cannot serve speaker ID; pass the main corpus folder")
    recordings = scan_word_folders(root)
    clips_per_speaker: dict[str, int] = {}
    for recording in recordings:
        clips_per_speaker[recording.speaker] = clips_per_speaker.get(recording.speaker, 0) + 1
    kept_speakers = tuple(sorted(s for s, n in clips_per_speaker.items() if n >= min_clips))
    if len(kept_speakers) < 2:
        raise CorpusError(
            f"{root}: only {len(kept_speakers)} speaker(s) have at least {min_clips} clips; "
            "speaker ID needs two or more (lower min_clips)"
        )
    kept = [r for r in recordings if r.speaker in kept_speakers]
    splits = per_speaker_splits(kept)
    utterances = [
        Utterance(utt_id=r.utt_id, path=r.path, label=kept_speakers.index(r.speaker), speaker=r.speaker,
                  split=splits[r.utt_id], word=r.word)
        for r in kept
    ]  # fmt: skip
    word_folders = {r.folder for r in recordings}
    version = VERSION_BY_WORD_COUNT.get(len(word_folders), "unknown")
    selection = (
        f"{len(kept_speakers)} of {len(clips_per_speaker)} speakers kept (at least {min_clips} clips each): "
        f"{len(kept)} of {len(recordings)} clips"
    )
    info = {
        "version": version,
        "layout": "word folders",
        "min_clips": min_clips,
        "speakers_kept": len(kept_speakers),
        "speakers_found": len(clips_per_speaker),
        "clips_kept": len(kept),
        "clips_found": len(recordings),
        "splits_from": f"per speaker, {SID_HELD_OUT_SHARE:.0%} test / {SID_HELD_OUT_SHARE:.0%} validation by clip-id hash",
        "notes": [selection],
    }
    name = corpus_name(version, "sid")
    return build_corpus(name, "sid", root, kept_speakers, utterances, CLIP_SECONDS, info)
