"""Corpus loaders (Speech Commands, VoxCeleb1, FSDD) on tiny trees written in the exact layouts,
plus the real FSDD copy, and `read_wav` on every kind of bad WAV file."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speech_unlearning.data import fsdd as fsdd_module
from speech_unlearning.data.audio import AudioError, fit_length, read_wav
from speech_unlearning.data.corpus import CORPORA, Corpus, CorpusError, Utterance
from speech_unlearning.data.fsdd import load_fsdd
from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.data.speech_commands import SILENCE_REGIONS, load_speech_commands, published_split
from speech_unlearning.data.speech_commands_layout import NOISE_FOLDER, SUPERB12_CLASSES
from speech_unlearning.data.voxceleb import load_voxceleb1

V001_WORDS = (
    "bed bird cat dog down eight five four go happy house left marvin nine no off on one right "
    "seven sheila six stop three tree two up wow yes zero"
).split()
TREE_WORDS = ("yes", "no", "up", "bed", "happy")  # three SUPERB command words, two unknown words


def write_wav(path: Path, samples: int = 800, rate: int = 16_000, channels: int = 1, seed: int = 0) -> Path:
    """A short random-noise WAV (PCM 16) at `path`, parent folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).uniform(-0.3, 0.3, size=(samples, channels)).astype(np.float32)
    soundfile.write(path, noise, rate, subtype="PCM_16")
    return path


def named(path: Path | str) -> str:
    """A path as a regular expression that matches it literally (error messages must name it)."""
    return re.escape(str(path))


def rule_split(speaker: str) -> str:
    """The Speech Commands split rule, written out independently of the loader."""
    percent = (int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 2**27) * (100 / (2**27 - 1))
    return "validation" if percent < 10 else "test" if percent < 20 else "train"


def speakers_by_rule(per_split: dict[str, int]) -> dict[str, list[str]]:
    """Hex speaker keys that the published rule puts in each split, `per_split[split]` of each."""
    chosen: dict[str, list[str]] = {split: [] for split in per_split}
    number = 0
    while any(len(chosen[s]) < n for s, n in per_split.items()):
        key = hashlib.md5(str(number).encode()).hexdigest()[:8]
        if len(chosen[rule_split(key)]) < per_split[rule_split(key)]:
            chosen[rule_split(key)].append(key)
        number += 1
    return chosen


# ----------------------------------------------------------------------------------------------
# Tree builders, in the exact published layouts.


def make_speech_commands(root: Path, words=TREE_WORDS, noise: bool = True) -> dict[str, str]:
    """A Speech Commands tree; returns utt_id -> the split its list files give it.

    The lists deliberately disagree with the hash rule (validation and test speakers are
    rule-train speakers), so a test can tell which of the two the loader applied.
    """
    by_rule = speakers_by_rule({"train": 6, "validation": 2, "test": 2})
    speakers = by_rule["train"] + by_rule["validation"] + by_rule["test"]
    listed = dict.fromkeys(by_rule["train"][:2], "validation") | dict.fromkeys(by_rule["train"][2:4], "test")
    expected = {}
    for word in words:
        for index, speaker in enumerate(speakers):
            for take in range(2 if index == 0 else 1):
                write_wav(root / word / f"{speaker}_nohash_{take}.wav", seed=index)
                expected[f"{word}/{speaker}_nohash_{take}"] = listed.get(speaker, "train")
    for split, list_name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        (root / list_name).write_text("".join(f"{u}.wav\n" for u, s in expected.items() if s == split))
    (root / "LICENSE").write_text("CC BY 4.0\n")
    if noise:
        write_wav(root / NOISE_FOLDER / "white_noise.wav", samples=12 * 16_000, seed=1)
        write_wav(root / NOISE_FOLDER / "running_tap.wav", samples=15 * 16_000, seed=2)
        (root / NOISE_FOLDER / "README.md").write_text("noise files\n")
    return expected


def make_test_archive(root: Path) -> None:
    """The separate 12-class test archive: class folders, unknown words prefixed by their word."""
    for index, word in enumerate(("yes", "no", "stop")):
        write_wav(root / word / f"a1b2c3d{index}_nohash_0.wav")
    write_wav(root / "_unknown_" / "backward_0c540988_nohash_0.wav")
    write_wav(root / "_unknown_" / "bed_0c540988_nohash_1.wav")
    write_wav(root / "_silence_" / "2.wav", samples=16_000)


VOX_LINES = [
    "1 id10001/1zcIwhmdeo4/00001.wav",
    "1 id10001/1zcIwhmdeo4/00002.wav",
    "2 id10001/7gWzIy6yIIk/00001.wav",
    "1 id10002/C7k7C-PDvAA/00001.wav",
    "3 id10002/C7k7C-PDvAA/00002.wav",
    "1 id10270/5r0dWxy17C8/00001.wav",
    "3 id10270/5r0dWxy17C8/00002.wav",
]
VOX_META = "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\nid10001\tA.J._Buckley\tm\tIreland\tdev\n"


def make_voxceleb(root: Path, two_archives: bool = False) -> None:
    """VoxCeleb1 with a single `wav/` tree, or the official dev/wav + test/wav archives."""
    for number, line in enumerate(VOX_LINES):
        relative = line.split()[1]
        tree = ("test/wav" if relative.startswith("id10270") else "dev/wav") if two_archives else "wav"
        write_wav(root / tree / relative, seed=number)
    (root / "iden_split.txt").write_text("\n".join(VOX_LINES) + "\n")
    (root / "vox1_meta.csv").write_text(VOX_META)


def make_fsdd(root: Path, speakers=("jackson", "theo"), takes=12, digits=range(10)) -> None:
    """FSDD: recordings/{digit}_{speaker}_{take}.wav at 8 kHz."""
    for digit in digits:
        for speaker in speakers:
            for take in range(takes):
                write_wav(root / "recordings" / f"{digit}_{speaker}_{take}.wav", samples=400, rate=8000)


# ----------------------------------------------------------------------------------------------
# Speech Commands.


@pytest.fixture(scope="module")
def sc_tree(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("speech_commands")
    return root, make_speech_commands(root)


@pytest.fixture(scope="module")
def test_archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("speech_commands_test_set")
    make_test_archive(root)
    return root


def spoken(corpus: Corpus) -> list[Utterance]:
    return [u for u in corpus.utterances if u.word != "_silence_"]


def silence(corpus: Corpus) -> list[Utterance]:
    return [u for u in corpus.utterances if u.word == "_silence_"]


def test_superb12_maps_command_words_and_keeps_unknown_words(sc_tree):
    root, _ = sc_tree
    corpus = load_speech_commands(root)
    assert corpus.label_names == SUPERB12_CLASSES
    assert corpus.label_names[:3] == ("yes", "no", "up")
    assert corpus.label_names[-2:] == ("_unknown_", "_silence_")
    assert corpus.task == "kws" and corpus.clip_seconds == 1.0 and "superb12" in corpus.name
    for utt in spoken(corpus):
        expected = utt.word if utt.word in ("yes", "no", "up") else "_unknown_"
        assert corpus.label_names[utt.label] == expected
        folder, file_name = utt.utt_id.split("/")
        assert folder == utt.word and utt.speaker == file_name.split("_nohash_")[0]
        assert Path(utt.path).is_absolute() and Path(utt.path) == root / f"{utt.utt_id}.wav"
    assert {u.word for u in spoken(corpus) if u.label == corpus.label_index("_unknown_")} == {"bed", "happy"}


def test_list_files_decide_the_splits(sc_tree):
    root, expected = sc_tree
    corpus = load_speech_commands(root)
    assert {u.utt_id: u.split for u in spoken(corpus)} == expected
    assert corpus.info["splits_from"] == "list files"


def test_silence_crops_are_deterministic_disjoint_and_one_class_share(sc_tree):
    root, _ = sc_tree
    first, second = load_speech_commands(root), load_speech_commands(root)
    assert silence(first) == silence(second) and first.fingerprint == second.fingerprint
    for split in ("train", "validation", "test"):
        spoken_count = sum(u.split == split for u in spoken(first))
        assert sum(u.split == split for u in silence(first)) == round(spoken_count / 11) > 0
    for noise_path in {u.path for u in silence(first)}:
        total = soundfile.info(noise_path).frames
        for crop in (u for u in silence(first) if u.path == noise_path):
            low, high = SILENCE_REGIONS[crop.split]
            assert crop.length == 16_000 and crop.label == first.label_index("_silence_")
            assert int(low * total) <= crop.start and crop.start + crop.length <= int(high * total)
            assert crop.speaker == f"noise:{Path(noise_path).stem}"
        crops = [u for u in silence(first) if u.path == noise_path]
        for a in crops:  # no stretch of noise is shared by two splits
            for b in (b for b in crops if b.split != a.split):
                assert a.start + a.length <= b.start or b.start + b.length <= a.start
    crop = silence(first)[0]
    whole = read_wav(crop.path)
    segment = read_wav(crop.path, start=crop.start, length=crop.length)
    np.testing.assert_array_equal(segment, whole[crop.start : crop.start + 16_000])


def test_full_setup_has_one_class_per_word_and_no_silence(tmp_path):
    make_speech_commands(tmp_path, noise=False)
    corpus = load_speech_commands(tmp_path, setup="full")
    assert corpus.label_names == tuple(sorted(TREE_WORDS))
    assert all(corpus.label_names[u.label] == u.word for u in corpus.utterances)
    with pytest.raises(CorpusError, match=named(tmp_path / NOISE_FOLDER)):
        load_speech_commands(tmp_path, setup="superb12")


def test_thirty_word_folders_are_recognised_as_v001(tmp_path):
    for index, word in enumerate(V001_WORDS):
        write_wav(tmp_path / word / f"{index:08x}_nohash_0.wav")
    (tmp_path / "validation_list.txt").write_text("")
    (tmp_path / "testing_list.txt").write_text("")
    corpus = load_speech_commands(tmp_path, setup="full")
    assert corpus.num_classes == 30 and corpus.info["version"] == "v0.01"
    assert corpus.name == "speech-commands-v0.01-full"


def test_recompute_splits_applies_the_published_hash_rule(tmp_path):
    make_speech_commands(tmp_path)
    (tmp_path / "testing_list.txt").unlink()
    with pytest.raises(CorpusError, match=f"{named(tmp_path / 'testing_list.txt')}.*recompute_splits"):
        load_speech_commands(tmp_path)
    corpus = load_speech_commands(tmp_path, recompute_splits=True)
    assert all(u.split == rule_split(u.speaker) for u in spoken(corpus))
    assert {u.split for u in spoken(corpus)} == {"train", "validation", "test"}
    assert corpus.info["splits_from"] == "published hash rule"


def test_published_split_matches_the_rule_and_its_proportions():
    keys = [hashlib.md5(str(i).encode()).hexdigest()[:8] for i in range(3000)]
    splits = [published_split(key) for key in keys]
    assert splits == [rule_split(key) for key in keys]
    assert 0.07 < splits.count("validation") / len(keys) < 0.13
    assert 0.07 < splits.count("test") / len(keys) < 0.13


def test_test_archive_is_read_as_a_test_only_corpus(test_archive):
    corpus = load_speech_commands(test_archive)
    by_id = {u.utt_id: u for u in corpus.utterances}
    assert len(corpus) == 6 and {u.split for u in corpus.utterances} == {"test"}
    backward = by_id["test/_unknown_/backward_0c540988_nohash_0"]
    assert (backward.word, backward.speaker) == ("backward", "0c540988")
    assert corpus.label_names[backward.label] == "_unknown_"
    assert corpus.label_names[by_id["test/_silence_/2"].label] == "_silence_"
    assert corpus.label_names[by_id["test/stop/a1b2c3d2_nohash_0"].label] == "stop"


def test_test_root_replaces_the_list_based_test_split(sc_tree, test_archive):
    root, expected = sc_tree
    corpus = load_speech_commands(root, test_root=test_archive)
    test = [u for u in corpus.utterances if u.split == "test"]
    assert test and all(u.utt_id.startswith("test/") for u in test)
    listed_test = {u for u, s in expected.items() if s == "test"}
    assert not listed_test & set(corpus.index_of), "testing_list.txt files must be left out, not trained on"
    assert {u.utt_id: u.split for u in spoken(corpus) if u.split != "test"} == {
        u: s for u, s in expected.items() if s != "test"
    }
    crop_splits = {u.split for u in corpus.utterances if u.utt_id.startswith(NOISE_FOLDER)}
    assert crop_splits == {"train", "validation"}, "the archive brings its own test silence"
    assert load_speech_commands(root).fingerprint != corpus.fingerprint


@pytest.mark.parametrize(
    "damage, culprit",
    [
        (lambda r: (r / "validation_list.txt").unlink(), "validation_list.txt"),
        (lambda r: append_line(r / "testing_list.txt", "yes/ffff_nohash_0.wav"), "testing_list.txt, line"),
        (lambda r: write_wav(r / "yes" / "nested" / "x_nohash_0.wav"), "yes/nested"),
        (lambda r: write_wav(r / "no" / "recording-1.wav"), "no/recording-1.wav"),
        (lambda r: write_wav(r / "_unknown_" / "bed_0c540988_nohash_0.wav"), ""),  # archive folder + lists
    ],
    ids=["missing-list", "unknown-list-entry", "nested-folder", "bad-file-name", "mixed-layouts"],
)
def test_speech_commands_layout_errors_name_the_culprit(tmp_path, damage, culprit):
    make_speech_commands(tmp_path, words=("yes", "no"))
    damage(tmp_path)
    with pytest.raises(CorpusError, match=named(tmp_path / culprit)):
        load_speech_commands(tmp_path)


def test_a_parent_or_empty_folder_is_not_a_speech_commands_root(tmp_path):
    make_speech_commands(tmp_path / "speech_commands_v0.01", words=("yes",))
    nested = tmp_path / "speech_commands_v0.01"
    with pytest.raises(CorpusError, match=f"{named(tmp_path)}: .*{named(nested)}"):
        load_speech_commands(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=f"{named(tmp_path / 'empty')}: no Speech Commands word folders"):
        load_speech_commands(tmp_path / "empty")


def test_test_archive_with_a_stray_folder_is_rejected(tmp_path):
    make_test_archive(tmp_path)
    write_wav(tmp_path / "backward" / "0c540988_nohash_0.wav")
    with pytest.raises(CorpusError, match=named(tmp_path / "backward")):
        load_speech_commands(tmp_path)
    with pytest.raises(CorpusError, match="superb12"):
        load_speech_commands(tmp_path, setup="full")


# ----------------------------------------------------------------------------------------------
# VoxCeleb1.


def test_voxceleb_labels_splits_and_meta(tmp_path):
    make_voxceleb(tmp_path)
    corpus = load_voxceleb1(tmp_path)
    assert corpus.task == "sid" and corpus.clip_seconds == 3.0
    assert corpus.label_names == ("id10001", "id10002", "id10270")
    codes = {"1": "train", "2": "validation", "3": "test"}
    for line, utt in zip(VOX_LINES, corpus.utterances):
        code, relative = line.split()
        assert utt.utt_id == relative[:-4] and utt.split == codes[code]
        assert utt.speaker == relative[:7] and utt.word == "" and corpus.label_names[utt.label] == utt.speaker
        assert utt.path == str(tmp_path / "wav" / relative)
    # ids 10001 and 10002 are contiguous from the first id, so there label == int(id[2:]) - 10001
    assert all(u.label == int(u.speaker[2:]) - 10001 for u in corpus.utterances if u.speaker != "id10270")
    assert corpus.info["meta"]["id10001"] == {
        "vggface1_id": "A.J._Buckley", "gender": "m", "nationality": "Ireland", "set": "dev"
    }
    assert load_voxceleb1(tmp_path, clip_seconds=8.0).clip_seconds == 8.0


def test_voxceleb_resolves_paths_across_the_two_official_archives(tmp_path):
    make_voxceleb(tmp_path, two_archives=True)
    corpus = load_voxceleb1(tmp_path)
    for utt in corpus.utterances:
        tree = "test/wav" if utt.speaker == "id10270" else "dev/wav"
        assert utt.path == str(tmp_path / tree / f"{utt.utt_id}.wav")
    assert corpus.info["trees"] == ["dev/wav", "test/wav"]


def test_voxceleb_reports_all_missing_files_in_one_error(tmp_path):
    make_voxceleb(tmp_path, two_archives=True)
    for line in VOX_LINES[1:4]:
        (tmp_path / "dev" / "wav" / line.split()[1]).unlink()
    first_missing = "id10001/1zcIwhmdeo4/00002.wav"
    expected = f"{named(tmp_path / 'iden_split.txt')}: 3 of 7 listed files are missing.*{first_missing}"
    with pytest.raises(CorpusError, match=expected):
        load_voxceleb1(tmp_path)


@pytest.mark.parametrize(
    "lines, culprit",
    [
        (["1 id10001/1zcIwhmdeo4/00001.wav", "4 id10001/1zcIwhmdeo4/00002.wav"], "line 2"),
        (["1 id10001/1zcIwhmdeo4/00001.wav", "", "1 1zcIwhmdeo4/00002.wav"], "line 3"),
        (["1 id10001/1zcIwhmdeo4/00001.wav 7"], "line 1"),
        (["1 id10001/1zcIwhmdeo4/00001.wav", "2 id10001/1zcIwhmdeo4/00001.wav"], "line 2.*line 1"),
    ],
    ids=["bad-code", "no-speaker-folder", "extra-field", "listed-twice"],
)
def test_voxceleb_malformed_split_lines_name_the_line(tmp_path, lines, culprit):
    make_voxceleb(tmp_path)
    (tmp_path / "iden_split.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match=f"{named(tmp_path / 'iden_split.txt')}, {culprit}"):
        load_voxceleb1(tmp_path)


def test_voxceleb_without_an_audio_tree_or_split_file_names_it(tmp_path):
    (tmp_path / "iden_split.txt").write_text(VOX_LINES[0] + "\n")
    with pytest.raises(CorpusError, match=f"{named(tmp_path)}: no VoxCeleb1 audio folder"):
        load_voxceleb1(tmp_path)
    (tmp_path / "iden_split.txt").unlink()
    with pytest.raises(CorpusError, match=named(tmp_path / "iden_split.txt")):
        load_voxceleb1(tmp_path)


# ----------------------------------------------------------------------------------------------
# FSDD.


def test_fsdd_kws_on_the_real_copy(fsdd_kws):
    assert len(fsdd_kws) == 3000 and fsdd_kws.num_classes == 10
    assert fsdd_kws.label_names == tuple("0123456789")
    assert len(fsdd_kws.indices("test")) == 300 and len(fsdd_kws.indices("validation")) == 300
    for utt in fsdd_kws.utterances:
        digit, speaker, take = utt.utt_id.split("_")
        assert fsdd_kws.label_names[utt.label] == digit == utt.word and utt.speaker == speaker
        assert utt.split == ("test" if int(take) < 5 else "validation" if int(take) < 10 else "train")
    path = fsdd_kws.utterances[0].path
    native = soundfile.info(path)
    assert native.samplerate == 8000
    assert abs(len(read_wav(path)) - 2 * native.frames) <= 1, "read_wav resamples 8 kHz to 16 kHz"


def test_fsdd_sid_on_the_real_copy(fsdd_sid, fsdd_kws):
    assert len(fsdd_sid) == 3000 and fsdd_sid.num_classes == 6
    assert fsdd_sid.label_names == tuple(sorted(fsdd_sid.label_names))
    assert all(fsdd_sid.label_names[u.label] == u.speaker for u in fsdd_sid.utterances)
    assert [u.split for u in fsdd_sid.utterances] == [u.split for u in fsdd_kws.utterances]
    assert fsdd_sid.fingerprint != fsdd_kws.fingerprint


def test_fsdd_default_root_comes_from_the_environment(tmp_path, monkeypatch):
    make_fsdd(tmp_path, takes=11, digits=(0, 1, 2))
    monkeypatch.setenv("SPEECH_UNLEARNING_FSDD", str(tmp_path))
    corpus = load_corpus("fsdd", "sid", cache_dir=tmp_path / "cache")
    assert corpus.root == tmp_path and corpus.label_names == ("jackson", "theo")
    assert corpus.info["counts"] == {"train": 6, "validation": 30, "test": 30}
    monkeypatch.delenv("SPEECH_UNLEARNING_FSDD")
    monkeypatch.setattr(fsdd_module, "SHARED_COPY", tmp_path / "absent")
    with pytest.raises(CorpusError, match="fsdd:PATH"):
        load_corpus("fsdd", "kws", cache_dir=tmp_path / "cache")


def test_fsdd_layout_errors_name_the_culprit(tmp_path):
    with pytest.raises(CorpusError, match=named(tmp_path / "recordings")):
        load_fsdd(tmp_path, "kws")
    make_fsdd(tmp_path, speakers=("theo",), takes=1)
    write_wav(tmp_path / "recordings" / "seven_theo_0.wav")
    with pytest.raises(CorpusError, match=named(tmp_path / "recordings" / "seven_theo_0.wav")):
        load_fsdd(tmp_path, "kws")


# ----------------------------------------------------------------------------------------------
# Every registered folder loader: task checks, option checks, fingerprints.


def append_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


def _move_a_clip_to_validation(root: Path) -> None:
    listed = (root / "validation_list.txt").read_text() + (root / "testing_list.txt").read_text()
    clips = (f"yes/{path.name}" for path in sorted((root / "yes").iterdir()))
    training_clip = next(clip for clip in clips if clip not in listed)
    append_line(root / "validation_list.txt", training_clip)


def _move_a_line_to_test(root: Path) -> None:
    (root / "iden_split.txt").write_text("\n".join(["3" + VOX_LINES[0][1:]] + VOX_LINES[1:]) + "\n")


def _rename_a_take_into_validation(root: Path) -> None:
    (root / "recordings" / "0_theo_11.wav").rename(root / "recordings" / "0_theo_50.wav")


LOADER_CASES = {
    # name: (task, wrong task, build the tree, move one utterance to another split)
    "speech-commands": (  # both tasks: keywords, and speakers (tests/test_speech_commands_real.py)
        "kws", None, lambda r: make_speech_commands(r, words=("yes", "bed")), _move_a_clip_to_validation
    ),
    "voxceleb1": ("sid", "kws", make_voxceleb, _move_a_line_to_test),
    "fsdd": ("kws", None, lambda r: make_fsdd(r, takes=12, digits=(0, 1)), _rename_a_take_into_validation),
}


def test_every_folder_loader_is_covered_here():
    # the embedded corpus has its own file; manifest and hf-dataset corpora are tested in test_byom.py
    assert set(CORPORA.names()) - {"embedded", "manifest", "hf-dataset"} == set(LOADER_CASES)


@pytest.mark.parametrize("name", sorted(LOADER_CASES))
def test_loader_checks_task_and_options(tmp_path, name):
    task, wrong_task, build, _ = LOADER_CASES[name]
    build(tmp_path)
    spec = f"{name}:{tmp_path}"
    if wrong_task is not None:
        with pytest.raises(CorpusError, match=f"{name}.*{wrong_task}"):
            load_corpus(spec, wrong_task, cache_dir=tmp_path / "cache")
    with pytest.raises(CorpusError, match="colour"):
        load_corpus(spec, task, cache_dir=tmp_path / "cache", colour="blue")


@pytest.mark.parametrize("name", sorted(LOADER_CASES))
def test_fingerprint_changes_with_files_and_splits_only(tmp_path, name):
    task, _, build, change_split = LOADER_CASES[name]
    build(tmp_path)
    spec = f"{name}:{tmp_path}"
    original = load_corpus(spec, task, cache_dir=tmp_path / "cache")
    assert load_corpus(spec, task, cache_dir=tmp_path / "cache").fingerprint == original.fingerprint
    change_split(tmp_path)
    moved = load_corpus(spec, task, cache_dir=tmp_path / "cache")
    assert moved.fingerprint != original.fingerprint
    assert [u.split for u in moved.utterances] != [u.split for u in original.utterances]
    some_file = Path(next(u.path for u in moved.utterances if u.length is None))
    write_wav(some_file, samples=900)
    assert load_corpus(spec, task, cache_dir=tmp_path / "cache").fingerprint != moved.fingerprint


def test_duplicate_utterance_ids_are_rejected_by_corpus(tmp_path):
    path = tmp_path / "yes" / "a_nohash_0.wav"
    utt = Utterance(utt_id="yes/a_nohash_0", path=str(path), label=0, speaker="a", split="train")
    with pytest.raises(CorpusError, match=f"duplicate utterance id 'yes/a_nohash_0'.*{named(path)}"):
        Corpus("tiny", "kws", tmp_path, ("yes",), (utt, utt), 1.0, "fingerprint")


# ----------------------------------------------------------------------------------------------
# read_wav on bad and unusual files.


def _truncate_after_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:44])


@pytest.mark.parametrize(
    "spoil, reason",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (_truncate_after_header, "no samples"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00"), "not a readable audio file"),
        (lambda p: p.write_text("not audio, just words\n" * 20), "not a readable audio file"),
        (lambda p: p.unlink(), "not found"),
    ],
    ids=["empty", "truncated-header", "truncated-riff", "not-audio", "missing"],
)
def test_read_wav_errors_name_the_file(tmp_path, spoil, reason):
    path = write_wav(tmp_path / "yes" / "0a7c2a8d_nohash_0.wav")
    spoil(path)
    with pytest.raises(AudioError, match=f"{named(path)}: .*{reason}"):
        read_wav(path)


def test_read_wav_returns_what_a_data_truncated_file_still_holds(tmp_path):
    path = write_wav(tmp_path / "cut.wav", samples=1000)
    path.write_bytes(path.read_bytes()[: 44 + 2 * 600])  # PCM 16: 2 bytes per sample
    assert read_wav(path).shape == (600,)


def test_read_wav_averages_stereo_to_mono(tmp_path):
    left, right = np.linspace(-0.5, 0.5, 800), np.linspace(0.25, -0.25, 800)
    stereo = np.stack([left, right], axis=1)  # (T, 2)
    soundfile.write(tmp_path / "stereo.wav", stereo, 16_000, subtype="FLOAT")
    np.testing.assert_allclose(read_wav(tmp_path / "stereo.wav"), (left + right) / 2, atol=1e-6)


def test_read_wav_resamples_44k1_to_16k_keeping_the_pitch(tmp_path):
    seconds, tone = 0.5, 440.0
    time = np.arange(int(44_100 * seconds)) / 44_100
    soundfile.write(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * tone * time), 44_100, subtype="FLOAT")
    audio = read_wav(tmp_path / "tone.wav")
    assert audio.dtype == np.float32 and abs(len(audio) - 8000) <= 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(audio))) * 16_000 / len(audio)
    assert abs(peak_hz - tone) <= 2


def test_longer_clips_are_cropped_and_shorter_ones_padded_for_features(tmp_path):
    path = write_wav(tmp_path / "long.wav", samples=int(1.7 * 16_000))
    audio = read_wav(path)
    np.testing.assert_array_equal(fit_length(audio, 16_000), audio[:16_000])
    short = read_wav(write_wav(tmp_path / "short.wav", samples=300))
    padded = fit_length(short, 16_000)
    assert padded.shape == (16_000,) and not padded[300:].any()
    np.testing.assert_array_equal(padded[:300], short)
