"""Forget / retain split builders, their validation, and the JSON round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speech_unlearning.config import ConfigError
from speech_unlearning.data.corpus import Corpus, CorpusError, Utterance
from speech_unlearning.data.splits import (
    UnlearningSplit,
    class_split,
    files_split,
    load_forget_split,
    sample_split,
    save_forget_split,
    speaker_split,
)

ROOT = Path("/data/synthetic")  # split building never opens the audio files
SPLIT_CYCLE = ("train", "train", "train", "validation", "test")


def synthetic_corpus(
    num_utterances: int = 60,
    num_labels: int = 4,
    num_speakers: int = 5,
    task: str = "kws",
    root: Path = ROOT,
    fingerprint: str = "fp-1",
) -> Corpus:
    """Utterance i: label i % num_labels, split cycling train x3 / validation / test over i % 5.

    KWS speakers take blocks of 5 consecutive utterances ((i // 5) % num_speakers), so each
    speaker has training items; SID speakers are the labels.
    """
    label_names = tuple(f"word{k}" for k in range(num_labels)) if task == "kws" else tuple(
        f"spk{k}" for k in range(num_labels)
    )
    utterances = []
    for i in range(num_utterances):
        speaker = f"spk{i % num_labels}" if task == "sid" else f"spk{(i // 5) % num_speakers}"
        utterances.append(
            Utterance(
                utt_id=f"{label_names[i % num_labels]}/{speaker}_{i:04d}",
                path=str(root / label_names[i % num_labels] / f"{speaker}_{i:04d}.wav"),
                label=i % num_labels,
                speaker=speaker,
                split=SPLIT_CYCLE[i % len(SPLIT_CYCLE)],
            )
        )
    return Corpus(f"synthetic-{task}", task, root, label_names, tuple(utterances), 1.0, fingerprint)


@pytest.fixture
def corpus() -> Corpus:
    return synthetic_corpus()


def train_ids(corpus: Corpus) -> set[str]:
    return {u.utt_id for u in corpus.utterances if u.split == "train"}


def ids_at(corpus: Corpus, positions: np.ndarray) -> set[str]:
    return {corpus.utterances[p].utt_id for p in positions}


def assert_partition(split: UnlearningSplit, corpus: Corpus) -> None:
    forget = split.forget_indices(corpus)
    retain = split.retain_indices(corpus)
    assert set(forget.tolist()).isdisjoint(retain.tolist())
    assert ids_at(corpus, forget) | ids_at(corpus, retain) == train_ids(corpus)
    assert ids_at(corpus, forget) == set(split.forget_ids)
    assert list(split.forget_ids) == sorted(split.forget_ids)


# --- builders ---------------------------------------------------------------------------------


def test_sample_split_takes_a_seeded_fraction_of_the_training_set(corpus):
    split = sample_split(corpus, 0.25, seed=7)
    assert split.kind == "sample" and split.params == {"ratio": 0.25, "seed": 7}
    assert len(split.forget_ids) == round(0.25 * 36)  # 36 training items
    assert_partition(split, corpus)
    assert split == sample_split(corpus, 0.25, seed=7)
    assert split.forget_ids != sample_split(corpus, 0.25, seed=8).forget_ids
    assert split.forgotten_labels(corpus) == []


def test_sample_split_forgets_at_least_one_item(corpus):
    assert len(sample_split(corpus, 0.001, seed=0).forget_ids) == 1


def test_sample_split_does_not_depend_on_utterance_order(corpus):
    reordered = Corpus(corpus.name, corpus.task, corpus.root, corpus.label_names, corpus.utterances[::-1], 1.0, "fp-1")
    assert sample_split(corpus, 0.1, seed=3).forget_ids == sample_split(reordered, 0.1, seed=3).forget_ids


def test_sample_split_is_identical_in_a_fresh_process(corpus):
    program = (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "from test_splits import synthetic_corpus;"
        "from speech_unlearning.data.splits import sample_split;"
        "print(json.dumps(sample_split(synthetic_corpus(), 0.1, seed=11).to_dict()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different str hash must not matter
    result = subprocess.run(
        [sys.executable, "-c", program, str(Path(__file__).parent)], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(result.stdout) == sample_split(corpus, 0.1, seed=11).to_dict()


def test_class_split_forgets_every_training_item_of_the_classes(corpus):
    split = class_split(corpus, ["word2", "word0"])
    forget = split.forget_indices(corpus)
    train = corpus.indices("train")
    assert set(forget.tolist()) == {i for i in train if corpus.labels[i] in (0, 2)}
    assert split.params == {"classes": ["word0", "word2"]}
    assert split.forgotten_labels(corpus) == [0, 2]
    assert_partition(split, corpus)


def test_class_split_accepts_one_name(corpus):
    assert class_split(corpus, "word1") == class_split(corpus, ["word1"])


def test_speaker_split_keeps_keyword_labels(corpus):
    split = speaker_split(corpus, ["spk1"])
    forget = split.forget_indices(corpus)
    assert {corpus.utterances[i].speaker for i in forget} == {"spk1"}
    assert {corpus.utterances[i].speaker for i in split.retain_indices(corpus)} == {"spk0", "spk2", "spk3", "spk4"}
    assert len(set(corpus.labels[forget].tolist())) > 1  # a speaker says several keywords
    assert split.forgotten_labels(corpus) == []  # KWS: the keywords stay in use
    assert_partition(split, corpus)


def test_speaker_split_in_speaker_id_equals_class_split():
    corpus = synthetic_corpus(task="sid")
    by_speaker = speaker_split(corpus, ["spk2"])
    by_class = class_split(corpus, ["spk2"])
    assert by_speaker.forget_ids == by_class.forget_ids
    assert by_speaker.forgotten_labels(corpus) == by_class.forgotten_labels(corpus) == [2]


def test_files_split_accepts_ids_relative_and_absolute_paths(tmp_path):
    corpus = synthetic_corpus(root=tmp_path)
    by_id = corpus.utterances[0]
    by_relative = corpus.utterances[1]
    by_absolute = corpus.utterances[5]
    relative = os.path.relpath(by_relative.path, tmp_path)
    split = files_split(corpus, [by_id.utt_id, relative, Path(by_absolute.path), f"./{relative}"])
    assert set(split.forget_ids) == {by_id.utt_id, by_relative.utt_id, by_absolute.utt_id}
    assert_partition(split, corpus)


def test_files_split_follows_a_linked_root(tmp_path):
    corpus = synthetic_corpus(root=tmp_path / "real")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    target = corpus.utterances[0]
    linked = tmp_path / "link" / os.path.relpath(target.path, tmp_path / "real")
    assert files_split(corpus, [str(linked)]).forget_ids == (target.utt_id,)


def test_files_split_forgets_every_segment_cut_from_a_file():
    segments = tuple(
        Utterance(f"noise/seg{k}", str(ROOT / "noise.wav"), 0, "noise", "train", start=k * 16000, length=16000)
        for k in range(3)
    )
    other = Utterance("word/a", str(ROOT / "a.wav"), 1, "s", "train")
    corpus = Corpus("segmented", "kws", ROOT, ("_silence_", "word"), (*segments, other), 1.0, "fp-s")
    assert files_split(corpus, ["noise.wav"]).forget_ids == ("noise/seg0", "noise/seg1", "noise/seg2")


@pytest.mark.parametrize(
    "escape", ["../outside.wav", "word0/../../outside.wav", "/etc/passwd", "/data/synthetic-other/x.wav"]
)
def test_files_split_rejects_paths_outside_the_root(corpus, escape):
    with pytest.raises(CorpusError, match="outside the corpus root"):
        files_split(corpus, [escape])


def test_files_split_names_items_that_are_not_training_items(corpus):
    test_item = next(u for u in corpus.utterances if u.split == "test")
    with pytest.raises(CorpusError, match="not in the training set") as error:
        files_split(corpus, [corpus.utterances[0].utt_id, test_item.path])
    assert test_item.utt_id in str(error.value)


def test_files_split_names_unknown_items(corpus):
    with pytest.raises(CorpusError, match="nope/missing.wav"):
        files_split(corpus, [corpus.utterances[0].utt_id, "nope/missing.wav"])


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, float("nan"), "0.1", True])
def test_ratio_outside_zero_one_is_rejected(corpus, ratio):
    with pytest.raises(ConfigError, match="ratio"):
        sample_split(corpus, ratio, seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", None])
def test_bad_seed_is_rejected(corpus, seed):
    with pytest.raises(ConfigError, match="seed"):
        sample_split(corpus, 0.1, seed=seed)


def test_ratio_that_takes_the_whole_training_set_is_rejected():
    corpus = synthetic_corpus(num_utterances=5)  # 3 training items; round(0.9 * 3) = 3
    with pytest.raises(CorpusError, match="whole training set"):
        sample_split(corpus, 0.9, seed=0)


def test_unknown_class_lists_the_valid_ones(corpus):
    with pytest.raises(CorpusError, match=r"'wordX'.*valid classes: word0, word1, word2, word3"):
        class_split(corpus, ["word1", "wordX"])


def test_unknown_class_listing_is_abbreviated_when_long():
    corpus = synthetic_corpus(num_utterances=200, num_labels=40)
    with pytest.raises(CorpusError, match=r"and 28 more") as error:
        class_split(corpus, ["nope"])
    assert "word39" not in str(error.value)


def test_class_without_training_items_is_an_empty_forget_set():
    corpus = synthetic_corpus(num_utterances=60, num_labels=5)  # label 3 sits only on positions 3, 8, ... (validation)
    with pytest.raises(CorpusError, match="'word3' have no training items"):
        class_split(corpus, ["word3"])


def test_forgetting_every_class_is_rejected(corpus):
    with pytest.raises(CorpusError, match="whole training set"):
        class_split(corpus, list(corpus.label_names))


def test_unknown_speaker_lists_the_valid_ones(corpus):
    with pytest.raises(CorpusError, match=r"'alice'.*valid speakers: spk0, spk1, spk2, spk3, spk4"):
        speaker_split(corpus, ["alice"])


def test_speaker_without_training_recordings_is_rejected():
    utterances = (
        Utterance("a", str(ROOT / "a.wav"), 0, "trainer", "train"),
        Utterance("b", str(ROOT / "b.wav"), 0, "trainer", "train"),
        Utterance("c", str(ROOT / "c.wav"), 0, "tester", "test"),
    )
    corpus = Corpus("small", "kws", ROOT, ("w",), utterances, 1.0, "fp")
    with pytest.raises(CorpusError, match="'tester' have no training recordings"):
        speaker_split(corpus, ["tester"])


@pytest.mark.parametrize("builder", [class_split, speaker_split, files_split])
def test_empty_request_is_rejected(corpus, builder):
    with pytest.raises(ConfigError, match="at least one"):
        builder(corpus, [])


def test_split_object_rejects_empty_forget_set_and_unknown_kind():
    with pytest.raises(ConfigError, match="forget_ids"):
        UnlearningSplit("sample", "c", "fp", (), {})
    with pytest.raises(ConfigError, match="kind"):
        UnlearningSplit("random", "c", "fp", ("a",), {})


# --- resolution against a corpus and files ----------------------------------------------------


def test_indices_cover_train_validation_and_test(corpus):
    split = sample_split(corpus, 0.1, seed=0)
    parts = [split.forget_indices, split.retain_indices, split.validation_indices, split.test_indices]
    everything = np.concatenate([indices_of(corpus) for indices_of in parts])
    assert sorted(everything.tolist()) == list(range(len(corpus)))


def test_fingerprint_mismatch_is_reported(corpus):
    split = class_split(corpus, ["word1"])
    newer = synthetic_corpus(fingerprint="fp-2")
    for resolve in (split.forget_indices, split.retain_indices, split.test_indices, split.forgotten_labels):
        with pytest.raises(CorpusError, match="another corpus version"):
            resolve(newer)


@pytest.mark.parametrize(
    "make",
    [
        lambda c: sample_split(c, 0.2, 4),
        lambda c: class_split(c, ["word3"]),
        lambda c: speaker_split(c, "spk0"),
        lambda c: files_split(c, ["word1/spk0_0001.wav"]),
    ],
    ids=["sample", "class", "speaker", "files"],
)
def test_save_and_load_round_trip_exactly(corpus, tmp_path, make):
    split = make(corpus)
    path = save_forget_split(split, tmp_path / "splits" / "forget.json")
    assert json.loads(path.read_text())["format_version"] == 1
    assert load_forget_split(path) == split
    assert load_forget_split(path, corpus) == split
    assert UnlearningSplit.from_dict(split.to_dict()) == split
    assert [p.name for p in path.parent.iterdir()] == ["forget.json"]  # no temporary left behind


def test_load_split_names_a_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.json"):
        load_forget_split(tmp_path / "absent.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt.json"):
        load_forget_split(corrupt)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format_version=99), "format_version"),
        (lambda d: d.pop("kind"), "missing"),
        (lambda d: d.update(forget_ids="word0/spk0_0000"), "forget_ids"),
        (lambda d: d.update(params={"classes": []}), "params.classes"),
    ],
)
def test_load_split_rejects_malformed_content(corpus, tmp_path, edit, message):
    data = class_split(corpus, ["word0"]).to_dict()
    edit(data)
    path = tmp_path / "split.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message) as error:
        load_forget_split(path)
    assert "split.json" in str(error.value)


@pytest.mark.parametrize(
    "bad_id, message", [("word0/ghost", "not in the corpus"), ("word3/spk0_0003", "not training items")]
)
def test_load_split_with_corpus_names_bad_ids(corpus, tmp_path, bad_id, message):
    data = sample_split(corpus, 0.1, seed=0).to_dict()
    data["forget_ids"] = sorted([*data["forget_ids"], bad_id])
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    load_forget_split(path)  # well-formed on its own
    with pytest.raises(CorpusError, match=message) as error:
        load_forget_split(path, corpus)
    assert bad_id in str(error.value) and "edited.json" in str(error.value)


def test_load_split_for_another_corpus_version(corpus, tmp_path):
    path = save_forget_split(sample_split(corpus, 0.1, seed=0), tmp_path / "s.json")
    with pytest.raises(CorpusError, match="another corpus version"):
        load_forget_split(path, synthetic_corpus(fingerprint="fp-2"))


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    num_utterances=st.integers(min_value=2, max_value=150),
    ratio=st.floats(min_value=0.001, max_value=0.999),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_sample_split_properties(num_utterances, ratio, seed):
    corpus = synthetic_corpus(num_utterances=num_utterances)
    n_train = len(train_ids(corpus))
    expected_size = max(1, round(ratio * n_train))
    if expected_size >= n_train:
        with pytest.raises(CorpusError, match="whole training set"):
            sample_split(corpus, ratio, seed)
        return
    split = sample_split(corpus, ratio, seed)
    assert len(split.forget_ids) == expected_size
    assert_partition(split, corpus)
    assert sample_split(corpus, ratio, seed) == split


@settings(max_examples=30, deadline=None)
@given(
    num_labels=st.sampled_from([2, 3, 4, 6]),  # not 5: label i % 5 would fix the split
    chosen=st.sets(st.integers(min_value=0, max_value=5), min_size=1),
)
def test_class_and_speaker_split_properties(num_labels, chosen):
    corpus = synthetic_corpus(num_utterances=90, num_labels=num_labels, num_speakers=num_labels)
    names = sorted(f"word{k}" for k in chosen if k < num_labels)
    if not names or len(names) == num_labels:
        return  # nothing to forget, or everything: covered by the error tests
    split = class_split(corpus, names)
    assert_partition(split, corpus)
    assert set(corpus.labels[split.retain_indices(corpus)].tolist()).isdisjoint(split.forgotten_labels(corpus))
    speakers = sorted(f"spk{k}" for k in chosen if k < num_labels)
    by_speaker = speaker_split(corpus, speakers)
    assert_partition(by_speaker, corpus)
    assert set(corpus.speakers[by_speaker.retain_indices(corpus)].tolist()).isdisjoint(speakers)
