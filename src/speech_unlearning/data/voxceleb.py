"""VoxCeleb1 speaker identification (the SUPERB SID split), read from a user's local copy.

Layout:

    ROOT/iden_split.txt        lines "<code> idXXXXX/<youtube-id>/<nnnnn>.wav"; 1 train, 2 dev, 3 test
    ROOT/wav/idXXXXX/<youtube-id>/<nnnnn>.wav                 one tree, 16 kHz
      or ROOT/dev/wav/... (1,211 speakers) and ROOT/test/wav/... (40 speakers), the two official
      archives; each listed path is looked up in whichever tree holds it
    ROOT/vox1_meta.csv         optional, tab-separated: VoxCeleb1 ID, VGGFace1 ID, Gender,
                               Nationality, Set; read into `Corpus.info["meta"]`

The full corpus has 1,251 speakers and 153,516 utterances (138,361 train / 6,904 dev ->
"validation" / 8,251 test). Only the files listed in `iden_split.txt` are used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .corpus import CORPORA, Corpus, CorpusError, Utterance
from .loader_helpers import build_corpus, check_task, reject_unknown_options

SPLIT_FILE = "iden_split.txt"
META_FILE = "vox1_meta.csv"
SPLIT_CODES = {"1": "train", "2": "validation", "3": "test"}
AUDIO_TREES = ("wav", "dev/wav", "test/wav")  # relative to ROOT, searched in this order
LISTED_PATH = re.compile(r"^(id\d+)/([^/]+)/([^/]+)\.wav$")
META_FIELDS = ("vggface1_id", "gender", "nationality", "set")
MISSING_SHOWN = 5


def read_split_file(split_file: Path) -> list[tuple[str, str, str]]:
    """(utt_id, speaker id, split) per line of `iden_split.txt`, in file order.

    CorpusError naming the file and line for a malformed line, an unknown split code or a
    path listed twice.
    """
    if not split_file.is_file():
        raise CorpusError(f"{split_file}: VoxCeleb1 split file not found")
    entries: list[tuple[str, str, str]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(split_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        match = LISTED_PATH.match(fields[1]) if len(fields) == 2 else None
        if match is None or fields[0] not in SPLIT_CODES:
            raise CorpusError(
                f"{split_file}, line {number}: expected '<1|2|3> idXXXXX/<session>/<nnnnn>.wav', got {line!r}"
            )
        utt_id = fields[1][: -len(".wav")]
        if utt_id in first_line:
            raise CorpusError(
                f"{split_file}, line {number}: {fields[1]} is already listed on line {first_line[utt_id]}"
            )
        first_line[utt_id] = number
        entries.append((utt_id, match.group(1), SPLIT_CODES[fields[0]]))
    if not entries:
        raise CorpusError(f"{split_file}: no utterances listed")
    return entries


def audio_trees(root: Path) -> list[Path]:
    """The audio trees present under `root`; CorpusError naming `root` when there is none."""
    trees = [root / tree for tree in AUDIO_TREES if (root / tree).is_dir()]
    if not trees:
        raise CorpusError(
            f"{root}: no VoxCeleb1 audio folder; expected {root / 'wav'} or the two official archives "
            f"{root / 'dev' / 'wav'} and {root / 'test' / 'wav'}"
        )
    return trees


def _size_if_file(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except (FileNotFoundError, NotADirectoryError):
        return None


def resolve_paths(root: Path, split_file: Path, utt_ids: list[str]) -> dict[str, tuple[str, int]]:
    """utt_id -> (absolute path, byte size), each looked up in the trees holding its speaker folder.

    All missing files are reported together, in one CorpusError with the count and the first few.
    One stat per file: VoxCeleb1 lists 153,516 of them.
    """
    trees = audio_trees(root)
    trees_of_speaker: dict[str, list[str]] = {}
    for tree in trees:
        for speaker in os.listdir(tree):
            trees_of_speaker.setdefault(speaker, []).append(str(tree))
    resolved: dict[str, tuple[str, int]] = {}
    missing: list[str] = []
    for utt_id in utt_ids:
        for tree in trees_of_speaker.get(utt_id.split("/", 1)[0], []):
            path = f"{tree}/{utt_id}.wav"
            size = _size_if_file(path)
            if size is not None:
                resolved[utt_id] = (path, size)
                break
        else:
            missing.append(f"{utt_id}.wav")
    if missing:
        raise CorpusError(
            f"{split_file}: {len(missing)} of {len(utt_ids)} listed files are missing from "
            f"{', '.join(map(str, trees))}; first: {', '.join(missing[:MISSING_SHOWN])}"
        )
    return resolved


def read_meta(meta_file: Path) -> dict[str, dict[str, str]]:
    """speaker id -> {vggface1_id, gender, nationality, set} from `vox1_meta.csv` (header skipped)."""
    meta: dict[str, dict[str, str]] = {}
    lines = meta_file.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) < 1 + len(META_FIELDS):
            raise CorpusError(
                f"{meta_file}, line {number}: expected 5 tab-separated fields "
                f"(VoxCeleb1 ID, VGGFace1 ID, Gender, Nationality, Set), got {line!r}"
            )
        meta[fields[0]] = dict(zip(META_FIELDS, fields[1:]))
    return meta


def load_voxceleb1(root: str | Path, clip_seconds: float = 3.0) -> Corpus:
    """Read a local VoxCeleb1 copy (layouts in the module docstring) as a "sid" Corpus.

    Labels: the sorted unique speaker ids of `iden_split.txt` numbered 0..K-1; for the full
    VoxCeleb1 (ids id10001..id11251, none missing) this equals int(id[2:]) - 10001.
    speaker = the id, word = "", utt_id = "idXXXXX/<session>/<nnnnn>". Every clip is cropped
    or padded to `clip_seconds` for the models. Raises CorpusError naming the file at fault.
    """
    try:
        clip_seconds = float(clip_seconds)
    except (TypeError, ValueError):
        raise CorpusError(f"clip_seconds: expected a number of seconds, got {clip_seconds!r}") from None
    if not clip_seconds > 0:
        raise CorpusError(f"clip_seconds: must be positive, got {clip_seconds!r}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CorpusError(f"{root}: VoxCeleb1 folder not found")
    split_file = root / SPLIT_FILE
    entries = read_split_file(split_file)
    located = resolve_paths(root, split_file, [utt_id for utt_id, _, _ in entries])
    speakers = sorted({speaker for _, speaker, _ in entries}, key=lambda s: (int(s[2:]), s))
    label_of = {speaker: label for label, speaker in enumerate(speakers)}
    utterances = [
        Utterance(
            utt_id=utt_id, path=located[utt_id][0], label=label_of[speaker], speaker=speaker, split=split
        )
        for utt_id, speaker, split in entries
    ]
    trees = [str(tree.relative_to(root)) for tree in audio_trees(root)]
    info: dict = {"trees": trees, "speakers": len(speakers)}
    if (root / META_FILE).is_file():
        info["meta"] = read_meta(root / META_FILE)
    sizes = dict(located.values())
    return build_corpus("voxceleb1", "sid", root, speakers, utterances, clip_seconds, info, sizes)


@CORPORA.register("voxceleb1")
def load(task: str, path: str | None, cache_dir: Path, **options) -> Corpus:
    """Corpus spec `voxceleb1:PATH`; option: clip_seconds (default 3.0)."""
    check_task("voxceleb1", task, ("sid",))
    reject_unknown_options("voxceleb1", options, ("clip_seconds",))
    if path is None:
        raise CorpusError("corpus 'voxceleb1' needs the folder of a local copy: voxceleb1:PATH")
    return load_voxceleb1(path, **options)
