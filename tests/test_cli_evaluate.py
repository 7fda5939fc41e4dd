"""`speech-unlearn evaluate` end to end on FSDD, with checkpoints saved by the shared pieces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speech_unlearning.cli.main import main
from speech_unlearning.data.splits import save_forget_split, speaker_split
from speech_unlearning.models.checkpoint import save_checkpoint
from speech_unlearning.models.registry import create_model
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.inference import accuracy
from speech_unlearning.training.recipes import checkpoint_metadata, corpus_arrays
from speech_unlearning.training.runtime import seed_everything
from speech_unlearning.training.trainer import fit

FORGOTTEN_SPEAKER = "jackson"
TRAIN_ROWS = 640  # a seeded subset keeps the two trainings to ~10 steps each


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models run much faster on one thread than on two contended ones."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _train_tiny(corpus, features, rows: np.ndarray, seed: int):
    """A narrow kws-resnet trained for one epoch on `rows` with the shared loop."""
    seed_everything(seed)
    model = create_model("kws-resnet", corpus.num_classes, channels=8, blocks=1)
    config = TrainConfig(epochs=1, batch_size=64, lr=3e-3, patience=0, progress=False, device="cpu", seed=seed)
    chosen = np.sort(np.random.default_rng(seed).choice(rows, size=min(TRAIN_ROWS, len(rows)), replace=False))
    result = fit(model, ArrayData(features, corpus.labels, chosen), None, config)
    return model.eval(), config, result


@pytest.fixture(scope="module")
def checkpoints(fsdd_kws, fsdd_root, cache_dir, tmp_path_factory):
    """Original, "unlearned" (the original plus a recorded request) and retrained-on-Dr checkpoints."""
    corpus = fsdd_kws
    features, spec = corpus_arrays(corpus, "logmel", cache_dir, progress=False)
    split = speaker_split(corpus, [FORGOTTEN_SPEAKER])
    folder = tmp_path_factory.mktemp("evaluate-cli")
    split_path = save_forget_split(split, folder / "split.json")
    original, config, trained = _train_tiny(corpus, features, corpus.indices("train"), seed=0)
    retrained, _, retrained_run = _train_tiny(corpus, features, split.retain_indices(corpus), seed=1)

    def save(name: str, model, train_seconds: float, split_record=None, history=()):
        metadata = checkpoint_metadata(
            corpus, spec, model, config, {"train_seconds": train_seconds}, split=split_record,
            corpus_spec=f"fsdd:{fsdd_root}",
        )
        metadata["history"] = list(history)
        save_checkpoint(folder / name, model, metadata)
        return folder / name

    paths = {
        "original": save("original", original, trained.seconds),
        "unlearned": save("unlearned", original, trained.seconds, split, [{"method": "noop", "seconds": 1.5}]),
        "retrained": save("retrained", retrained, 4.0, split),
        "split": split_path,
    }
    return dict(paths=paths, corpus=corpus, features=features, split=split, original=original)


def _evaluate(capsys, *arguments: str) -> tuple[int, str, str]:
    code = main(["evaluate", *arguments, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_writes_the_report_beside_the_checkpoint(checkpoints, cache_dir, capsys):
    paths = checkpoints["paths"]
    code, out, err = _evaluate(
        capsys,
        "--checkpoint", str(paths["unlearned"]), "--reference", str(paths["retrained"]),
        "--split", str(paths["split"]), "--cache-dir", str(cache_dir),
    )
    assert code == 0, err
    report_folder = paths["unlearned"].parent / "unlearned-eval"
    report = json.loads((report_folder / "report.json").read_text())
    assert report["schema_version"] >= 1
    assert report["split"]["forgotten_speakers"] == [FORGOTTEN_SPEAKER]
    corpus, split = checkpoints["corpus"], checkpoints["split"]
    forget = ArrayData(checkpoints["features"], corpus.labels, split.forget_indices(corpus))
    assert report["models"]["unlearned"]["accuracy"]["df"] == pytest.approx(accuracy(checkpoints["original"], forget))
    assert report["models"]["unlearned"]["time"]["ratio"] == pytest.approx(1.5 / 4.0)  # recorded times
    assert report["gap_to_retrain"]["avg_gap_pp"] is not None
    assert report["models"]["unlearned"]["accuracy"]["n_test_speaker"] > 0  # FSDD has every speaker in test
    assert report["skipped"] == {}
    assert "accuracy.df" in out and "Avg. Gap to retrain" in out and "svc_mia" in out
    assert "MIA" in (report_folder / "report.md").read_text()


def test_evaluate_uses_the_recorded_split_and_the_chosen_metrics(checkpoints, cache_dir, tmp_path, capsys):
    paths = checkpoints["paths"]
    code, out, err = _evaluate(
        capsys, "--checkpoint", str(paths["unlearned"]), "--original", str(paths["original"]),
        "--metrics", "accuracy", "--out", str(tmp_path / "eval"), "--cache-dir", str(cache_dir),
    )
    assert code == 0, err
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["metrics"] == ["accuracy"] and sorted(report["models"]) == ["original", "unlearned"]
    assert report["split"]["n_forget"] == len(checkpoints["split"].forget_ids)
    # The "unlearned" checkpoint holds the original weights, so both score the same.
    assert report["models"]["unlearned"]["accuracy"] == report["models"]["original"]["accuracy"]
    assert report["gap_to_retrain"] is None


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda paths, tmp: ["--split", str(tmp / "missing.json")], "no such split file"),
        (lambda paths, tmp: ["--metrics", "accuracy,acuracy"], "unknown metric 'acuracy'; valid names: accuracy"),
        (lambda paths, tmp: ["--reference", str(tmp / "nowhere")], "no such checkpoint folder"),
    ],
    ids=["missing-split", "unknown-metric", "missing-reference"],
)
def test_evaluate_rejects_bad_arguments_by_name(checkpoints, cache_dir, tmp_path, capsys, change, message):
    paths = checkpoints["paths"]
    out = tmp_path / "eval"
    arguments = ["--checkpoint", str(paths["unlearned"]), "--cache-dir", str(cache_dir), "--out", str(out)]
    code, _, err = _evaluate(capsys, *arguments, *change(paths, tmp_path))
    assert code == 2 and message in err
    assert not out.exists()  # rejected before anything was written


def test_evaluate_rejects_a_split_made_for_another_corpus(checkpoints, fsdd_sid, cache_dir, tmp_path, capsys):
    other = save_forget_split(speaker_split(fsdd_sid, [FORGOTTEN_SPEAKER]), tmp_path / "sid-split.json")
    out = tmp_path / "eval"
    code, _, err = _evaluate(
        capsys, "--checkpoint", str(checkpoints["paths"]["unlearned"]), "--split", str(other),
        "--cache-dir", str(cache_dir), "--out", str(out),
    )
    assert code == 2 and "made for another corpus version" in err and str(other) in err
    assert not out.exists()  # nothing half-written
