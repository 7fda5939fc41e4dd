"""Speech Commands as a speaker-ID corpus (speaker threshold, per-speaker split, determinism) on a
tiny tree written in the v0.02 layout; the real-speech preset; augmentation and the converged
recipe; and, when the read-only mini corpus is beside the project, both tasks on real clips."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from speech_unlearning.data.corpus import CorpusError, is_person
from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.data.speech_commands import training_noise_clips
from speech_unlearning.data.speech_commands_layout import NOISE_FOLDER
from speech_unlearning.data.speech_commands_sid import SID_MIN_CLIPS, load_speech_commands_sid

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MINI = Path(os.environ.get("SPEECH_UNLEARNING_SPEECH_COMMANDS", PROJECT_ROOT.parent / "shared" / "data" / "speech-commands-mini"))
WORDS = ("yes", "no", "up", "bed", "happy", "marvin")


def write_clip(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).uniform(-0.2, 0.2, size=1600).astype(np.float32)
    soundfile.write(path, noise, 16_000, subtype="PCM_16")


def make_tree(root: Path, clips_per_speaker: dict[str, int]) -> None:
    """A v0.02-layout tree: each speaker's clips spread over the word folders, with split lists."""
    seed = 0
    for speaker, count in clips_per_speaker.items():
        for index in range(count):
            word, take = WORDS[index % len(WORDS)], index // len(WORDS)
            write_clip(root / word / f"{speaker}_nohash_{take}.wav", seed)
            seed += 1
    (root / "validation_list.txt").write_text("")
    (root / "testing_list.txt").write_text("")
    noise = np.random.default_rng(99).uniform(-0.1, 0.1, size=5 * 16_000).astype(np.float32)
    (root / NOISE_FOLDER).mkdir()
    soundfile.write(root / NOISE_FOLDER / "white_noise.wav", noise, 16_000, subtype="PCM_16")


CLIPS = {"aaaa0001": 30, "bbbb0002": 24, "cccc0003": 20, "dddd0004": 19, "eeee0005": 3}


@pytest.fixture(scope="module")
def sid_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sc_sid")
    make_tree(root, CLIPS)
    return root


def test_speakers_below_the_threshold_are_dropped_and_counted(sid_tree):
    corpus = load_corpus(f"speech-commands:{sid_tree}", "sid")
    kept = sorted(s for s, n in CLIPS.items() if n >= SID_MIN_CLIPS)
    assert corpus.task == "sid" and list(corpus.label_names) == kept
    assert len(corpus) == sum(CLIPS[s] for s in kept)
    assert corpus.info["speakers_found"] == len(CLIPS) and corpus.info["speakers_kept"] == len(kept)
    assert f"{len(kept)} of {len(CLIPS)} speakers" in corpus.info["notes"][0]
    lower = load_speech_commands_sid(sid_tree, min_clips=10)
    assert "dddd0004" in lower.label_names and "eeee0005" not in lower.label_names


def test_every_kept_speaker_is_split_across_train_validation_and_test(sid_tree):
    corpus = load_speech_commands_sid(sid_tree)
    for label, speaker in enumerate(corpus.label_names):
        splits = [u.split for u in corpus.utterances if u.label == label]
        assert all(u.speaker == speaker for u in corpus.utterances if u.label == label)
        count = CLIPS[speaker]
        held_out = max(2, round(0.15 * count))
        assert splits.count("test") == held_out and splits.count("validation") == held_out
        assert splits.count("train") == count - 2 * held_out


def test_the_split_is_fixed_by_the_clip_ids_not_by_the_folder_order(sid_tree, tmp_path):
    first = load_speech_commands_sid(sid_tree)
    copy = tmp_path / "moved"
    shutil.copytree(sid_tree, copy)
    second = load_speech_commands_sid(copy)
    assert first.fingerprint == second.fingerprint
    assert [(u.utt_id, u.split) for u in first.utterances] == [(u.utt_id, u.split) for u in second.utterances]
    # Adding a speaker changes nobody else's split.
    make_tree(tmp_path / "grown", {**CLIPS, "ffff0006": 25})
    grown = {u.utt_id: u.split for u in load_speech_commands_sid(tmp_path / "grown").utterances}
    assert all(grown[u.utt_id] == u.split for u in first.utterances)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"min_clips": 100}, "only 0 speaker"), ({"min_clips": 2}, "min_clips: must be at least"),
     ({"min_clips": "many"}, "min_clips: expected an integer"), ({"setup": "full"}, "unknown option")],
)  # fmt: skip
def test_bad_speaker_id_options_name_the_culprit(sid_tree, options, message):
    with pytest.raises(CorpusError, match=message):
        load_corpus(f"speech-commands:{sid_tree}", "sid", **options)


def test_noise_pseudo_speakers_are_not_people(tmp_path):
    from tests.test_loaders import make_speech_commands

    make_speech_commands(tmp_path)
    corpus = load_corpus(f"speech-commands:{tmp_path}", "kws")
    noise_keys = {u.speaker for u in corpus.utterances if u.word == "_silence_"}
    assert noise_keys and not any(is_person(key) for key in noise_keys)
    assert all(is_person(u.speaker) for u in corpus.utterances if u.word != "_silence_")


def test_augmentation_noise_comes_from_the_training_region_only(sid_tree):
    clips = training_noise_clips(sid_tree / NOISE_FOLDER, count=40, seed=0)
    full, _ = soundfile.read(sid_tree / NOISE_FOLDER / "white_noise.wav", dtype="float32")
    training_region = full[: int(0.8 * len(full))]
    assert clips.shape == (40, 16_000)
    # Every crop is a whole 1 s stretch of the first 80 % of the file (PCM values match exactly).
    windows = np.lib.stride_tricks.sliding_window_view(training_region, 16_000)  # (starts, 16000)
    for clip in clips:
        starts = np.flatnonzero((windows[:, :64] == clip[:64]).all(axis=1))
        assert any(np.array_equal(windows[start], clip) for start in starts)
    assert not np.array_equal(clips[0], training_noise_clips(sid_tree / NOISE_FOLDER, count=40, seed=1)[0])


# ----------------------------------------------------------------------------------------------
# Augmentation and recipes.


def augmenter(seed: int = 0, noise_bank=None, **settings):
    from speech_unlearning.training.augment import AugmentSettings, LogMelAugment

    return LogMelAugment(AugmentSettings(**settings), seed, noise_bank)


def log_mel_batch(seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(6, 40, 101)).astype(np.float32))


def test_time_shift_moves_frames_and_fills_with_silence():
    batch = log_mel_batch()
    shifted = augmenter(shift_frames=10)(batch)
    for clean, moved in zip(batch, shifted):
        silence = clean.min()
        matched = [s for s in range(-10, 11) if torch.equal(moved[:, max(s, 0):101 + min(s, 0)], clean[:, max(-s, 0):101 - max(s, 0)])]
        assert matched, "each clip is its clean self, moved by a whole number of frames"
        s = matched[0]
        filled = moved[:, :s] if s > 0 else moved[:, 101 + s:]
        assert torch.all(filled == silence)


def test_masks_cover_at_most_their_width_and_use_the_clip_mean():
    batch = log_mel_batch()
    masked = augmenter(freq_masks=1, freq_mask_bins=7, time_masks=1, time_mask_frames=10)(batch)
    for clean, out in zip(batch, masked):
        changed = out != clean
        assert torch.all(out[changed] == clean.mean())
        rows = changed.all(dim=1).sum().item()  # whole mel bins masked
        cols = changed.all(dim=0).sum().item()  # whole frames masked
        assert rows <= 7 and cols <= 10


def test_noise_is_mixed_at_the_drawn_snr_and_runs_repeat_exactly():
    batch = log_mel_batch()
    bank = np.random.default_rng(5).normal(size=(4, 40, 101)).astype(np.float32)
    mixed = augmenter(noise_prob=1.0, noise_snr_db_low=10, noise_snr_db_high=10, noise_bank=bank)(batch)
    added = (mixed.exp() - batch.exp()).mean(dim=(1, 2))  # noise power that went in, per clip
    snr = 10 * torch.log10(batch.exp().mean(dim=(1, 2)) / added)
    assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=1e-3)
    again = augmenter(noise_prob=1.0, noise_snr_db_low=10, noise_snr_db_high=10, noise_bank=bank)(batch)
    assert torch.equal(mixed, again)
    assert not torch.equal(mixed, augmenter(seed=1, noise_prob=1.0, noise_bank=bank)(batch))
    with pytest.raises(ValueError, match="noise"):
        augmenter(noise_prob=0.5)


def test_recipes_differ_where_documented_and_unknown_ones_are_refused():
    from speech_unlearning.training.recipes import default_train_config

    converged = default_train_config("kws", "kws-resnet")
    early = default_train_config("kws", "kws-resnet", "early-stop")
    assert converged.patience == 0 and early.patience > 0
    assert converged.epochs > early.epochs
    with pytest.raises(ValueError, match="valid recipes: converged, early-stop"):
        default_train_config("kws", "kws-resnet", "longest")


def test_training_with_augmentation_repeats_bit_for_bit(tmp_path, cache_dir):
    from speech_unlearning.training.config import TrainConfig
    from speech_unlearning.training.recipes import train_original
    from tests.test_loaders import make_speech_commands

    make_speech_commands(tmp_path)
    corpus = load_corpus(f"speech-commands:{tmp_path}", "kws", cache_dir=cache_dir)
    config = TrainConfig(epochs=1, batch_size=16, patience=0, progress=False, threads=1,
                         shift_ms=50, noise_prob=0.5, freq_masks=1, time_masks=1)  # fmt: skip
    runs = [train_original(corpus, "kws-resnet", 3, cache_dir, config, model_options={"channels": 4}) for _ in range(2)]
    first, second = (dict(model.state_dict()) for model, _, _ in runs)
    assert all(torch.equal(first[name], second[name]) for name in first)
    metrics = runs[0][2]
    assert "background noise p=0.5" in metrics["augmentation"]
    assert metrics["train_test_gap"] == pytest.approx(metrics["train_accuracy"] - metrics["test_accuracy"])
    plain = train_original(corpus, "kws-resnet", 3, cache_dir, TrainConfig(epochs=1, batch_size=16, patience=0, progress=False, threads=1),
                           model_options={"channels": 4})[0].state_dict()  # fmt: skip
    assert not all(torch.equal(first[name], plain[name]) for name in first)


# ----------------------------------------------------------------------------------------------
# The real mini corpus beside the project (read-only), when it is there.

needs_mini = pytest.mark.skipif(
    not (MINI / "validation_list.txt").is_file(),
    reason=f"the Speech Commands mini corpus is not at {MINI} (set SPEECH_UNLEARNING_SPEECH_COMMANDS to a v0.02 folder)",
)


@needs_mini
def test_the_real_preset_plans_both_tasks_and_every_scenario_on_the_mini_corpus():
    from speech_unlearning.experiments.plan import build_plan
    from speech_unlearning.experiments.presets import resolve_config

    config = resolve_config("real", {"speech_commands": str(MINI)})
    plan = build_plan(config)
    assert plan.runnable
    retrains = [run for run in plan.runs if run.stage == "retrain"]
    seen = {(run.config["task"], run.config["split"]["scenario"]) for run in retrains}
    assert seen == {("kws", "sample"), ("kws", "class"), ("kws", "speaker"), ("sid", "sample"), ("sid", "class")}
    assert {run.config["corpus"] for run in retrains} == {f"speech-commands:{MINI.resolve()}"}
    assert len(config.seeds) >= 5


@needs_mini
def test_both_tasks_on_the_mini_corpus_and_speaker_requests_name_real_people(cache_dir):
    from speech_unlearning.data.splits import speaker_split
    from speech_unlearning.experiments.job_inputs import draw_forget_split

    kws = load_corpus(f"speech-commands:{MINI}", "kws", cache_dir=cache_dir)
    sid = load_corpus(f"speech-commands:{MINI}", "sid", cache_dir=cache_dir)
    assert kws.num_classes == 12 and len({u.speaker for u in kws.utterances if is_person(u.speaker)}) == 177
    assert sid.num_classes == sid.info["speakers_kept"] >= 40
    assert set(sid.label_names) <= {u.speaker for u in kws.utterances}
    # Every grid draw of a speaker request forgets a person's recordings, never a noise file.
    for seed in range(10):
        split = draw_forget_split(kws, {"scenario": "speaker", "count": 1, "seed": seed})
        (speaker,) = split.params["speakers"]
        assert is_person(speaker)
        assert split.forget_ids == speaker_split(kws, speaker).forget_ids
