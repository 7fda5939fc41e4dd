"""`speech-unlearn unlearn` and `speech-unlearn methods`, end to end on real speech (FSDD)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speech_unlearning.cli.main import main
from speech_unlearning.data.features import FeatureSpec, load_features
from speech_unlearning.data.splits import load_forget_split
from speech_unlearning.forgetting.history import recorded_split
from speech_unlearning.io import read_json, sha256_file
from speech_unlearning.methods import method_names
from speech_unlearning.models.checkpoint import load_checkpoint, save_checkpoint
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.inference import predict_logits
from speech_unlearning.training.recipes import checkpoint_metadata, feature_spec_for_model, train_original


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models: one thread avoids intra-op synchronisation stalls on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def fsdd_checkpoint(fsdd_kws, fsdd_root, cache_dir, tmp_path_factory) -> Path:
    """A deliberately small kws-resnet trained for two epochs on FSDD digits, saved as a checkpoint."""
    options = {"channels": 8, "blocks": 1}
    config = TrainConfig(epochs=2, batch_size=64, lr=1e-2, patience=0, progress=False)
    model, result, metrics = train_original(
        fsdd_kws, "kws-resnet", seed=0, cache_dir=cache_dir, config=config, progress=False, model_options=options
    )
    spec = feature_spec_for_model(fsdd_kws, "kws-resnet")
    metadata = checkpoint_metadata(
        fsdd_kws, spec, model, config, metrics, corpus_spec=f"fsdd:{fsdd_root}", train_result=result
    )
    folder = tmp_path_factory.mktemp("original") / "kws"
    return save_checkpoint(folder, model, metadata)


@pytest.fixture(scope="module")
def best_known_digit(fsdd_checkpoint, fsdd_kws, cache_dir) -> str:
    """The digit the (barely trained) original recognises best: forgetting it must show."""
    model, metadata = load_checkpoint(fsdd_checkpoint)
    features = load_features(fsdd_kws, FeatureSpec(**metadata["feature_spec"]), cache_dir=cache_dir, progress=False)
    train = ArrayData(features, fsdd_kws.labels, fsdd_kws.indices("train"))
    predicted = predict_logits(model, train).argmax(axis=1)
    truth = fsdd_kws.labels[train.indices]
    recall = [np.mean(predicted[truth == label] == label) for label in range(fsdd_kws.num_classes)]
    return fsdd_kws.label_names[int(np.argmax(recall))]


def _files_digest(folder: Path) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted(folder.iterdir())}


def _unlearn(checkpoint: Path, out: Path, cache_dir: Path, *extra: str) -> int:
    return main(
        ["unlearn", "--checkpoint", str(checkpoint), "--out", str(out), "--cache-dir", str(cache_dir), "--no-progress",
         "--device", "cpu", *extra]
    )


def test_unlearn_a_keyword_then_a_speaker_on_fsdd(
    fsdd_checkpoint, best_known_digit, fsdd_kws, cache_dir, tmp_path, capsys
):
    original_files = _files_digest(fsdd_checkpoint)
    first = tmp_path / "forget-digit"
    code = _unlearn(fsdd_checkpoint, first, cache_dir, "--method", "gradascent", "--forget-class", best_known_digit,
                    "--set", "lr=0.01", "--set", "epochs=2", "--budget-seconds", "none", "--seed", "1")
    assert code == 0
    printed = capsys.readouterr().out
    assert "Df (forget)" in printed and "Dr (retain)" in printed and "Dtest forgotten classes" in printed
    assert _files_digest(fsdd_checkpoint) == original_files  # the original is only read

    model, metadata = load_checkpoint(first)
    assert metadata["method"] == "gradascent" and metadata["config"]["lr"] == 0.01 and metadata["config"]["epochs"] == 2
    assert metadata["steps"] > 0 and metadata["seconds"] > 0 and metadata["budget_exhausted"] is False
    split = load_forget_split(first / "split.json", fsdd_kws)
    assert split.kind == "class" and recorded_split(metadata, fsdd_kws, "test") == split
    (entry,) = metadata["history"]
    assert entry["accuracy_after"]["forget"] < entry["accuracy_before"]["forget"]
    assert entry["accuracy_after"]["forget"] == metadata["metrics"]["forget_accuracy"]
    assert entry["source_weights_sha256"] == read_json(fsdd_checkpoint / "metadata.json")["weights_sha256"]
    assert entry["forget_count"] == len(split.forget_indices(fsdd_kws))

    # A second request on the unlearned checkpoint: the first forget set stays out of Dr.
    second = tmp_path / "forget-speaker"
    speaker = fsdd_kws.utterances[int(fsdd_kws.indices("train")[0])].speaker
    assert _unlearn(first, second, cache_dir, "--method", "ssd", "--forget-speaker", speaker,
                    "--budget-seconds", "30") == 0
    _, metadata = load_checkpoint(second)
    assert [e["method"] for e in metadata["history"]] == ["gradascent", "ssd"]
    later = metadata["history"][1]
    second_split = load_forget_split(second / "split.json", fsdd_kws)
    forgotten = set(split.forget_indices(fsdd_kws)) | set(second_split.forget_indices(fsdd_kws))
    assert later["retain_count"] == len(fsdd_kws.indices("train")) - len(forgotten)
    assert later["budget_seconds"] == 30


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--method", "scrub", "--forget-ratio", "0.1", "--set", "lerning_rate=1"], "'lerning_rate'"),
        (["--method", "scrub", "--forget-ratio", "1.5"], "--forget-ratio"),
        (["--method", "ssd+superloss", "--forget-ratio", "0.1"], "per-sample"),
        (["--method", "nope", "--forget-ratio", "0.1"], "valid names"),
        (["--method", "scrub", "--forget-split", "missing.json"], "missing.json"),
        (["--method", "scrub", "--forget-ratio", "0.1", "--budget-seconds", "-3"], "--budget-seconds"),
    ],
)
def test_bad_requests_fail_before_any_compute(fsdd_checkpoint, tmp_path, capsys, arguments, message):
    out = tmp_path / "out"
    assert _unlearn(fsdd_checkpoint, out, tmp_path / "cache", *arguments) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_output_must_not_be_the_original(fsdd_checkpoint, tmp_path, capsys):
    assert _unlearn(fsdd_checkpoint, fsdd_checkpoint, tmp_path, "--method", "finetune", "--forget-ratio", "0.1") == 2
    assert "--out" in capsys.readouterr().err


def test_methods_command_lists_every_method_with_defaults(capsys):
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    for name in method_names():
        assert f"\n{name}: " in "\n" + listing
    assert "mask_ratio" in listing and "superloss_lambda" in listing
    assert main(["methods", "--names"]) == 0
    assert capsys.readouterr().out.split() == method_names(with_superloss=True)
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} >= set(method_names())
