"""`speech-unlearn train` end to end on FSDD with a tiny model and budget, and its input checks."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from speech_unlearning.cli.main import main
from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.inference import accuracy
from speech_unlearning.training.recipes import corpus_arrays

# A narrow x-vector keeps the end-to-end run to a few seconds on two CPU cores.
TINY_SID = ["--model-option", "channels=16", "--model-option", "stats_channels=32", "--model-option", "embedding_dim=16"]


@pytest.fixture(scope="module")
def trained(fsdd_root, cache_dir, tmp_path_factory):
    """Run the CLI once; share its output folder and printed text between tests."""
    out = tmp_path_factory.mktemp("train-cli") / "sid-original"
    argv = ["train", "--task", "sid", "--corpus", f"fsdd:{fsdd_root}", "--seed", "3", "--out", str(out)]
    argv += TINY_SID + ["--set", "epochs=2", "--cache-dir", str(cache_dir), "--no-progress"]
    stdout = io.StringIO()  # capsys is function-scoped; this fixture is shared by the module
    with contextlib.redirect_stdout(stdout):
        status = main(argv)
    return status, out, stdout.getvalue()


def test_train_writes_a_reloadable_checkpoint_and_prints_its_test_accuracy(trained, fsdd_root, cache_dir):
    from speech_unlearning.models.checkpoint import load_checkpoint

    status, out, printed = trained
    assert status == 0
    match = re.search(r"test accuracy: ([0-9.]+)", printed)
    assert match, printed
    printed_accuracy = float(match.group(1))

    summary = json.loads((out / "metrics.json").read_text())
    assert summary["metrics"]["test_accuracy"] == pytest.approx(printed_accuracy, abs=5e-5)
    assert summary["epochs_run"] == 2 and summary["seed"] == 3

    model, metadata = load_checkpoint(out)
    assert metadata["corpus"]["spec"] == f"fsdd:{fsdd_root.resolve()}"
    assert metadata["model"]["name"] == "sid-xvector" and metadata["model"]["options"]["channels"] == 16
    assert metadata["train_config"]["epochs"] == 2 and metadata["train_config"]["seed"] == 3
    assert metadata["label_names"] == sorted(metadata["label_names"]) and len(metadata["label_names"]) == 6
    assert metadata["history"] == []

    # The stored corpus spec reloads the same data, and the reloaded weights score what was printed.
    corpus = load_corpus(metadata["corpus"]["spec"], metadata["corpus"]["task"], cache_dir=cache_dir)
    assert corpus.fingerprint == metadata["corpus"]["fingerprint"]
    features, spec = corpus_arrays(corpus, model.input_kind, cache_dir, progress=False)
    assert metadata["feature_spec"]["n_mels"] == spec.n_mels
    test = ArrayData(features, corpus.labels, corpus.indices("test"))
    assert accuracy(model, test) == pytest.approx(printed_accuracy, abs=5e-5)
    assert printed_accuracy > 0.35  # two epochs learn well above the 1/6 of chance


def test_train_stores_the_default_corpus_spec_without_a_path(tmp_path, monkeypatch, fsdd_root):
    from speech_unlearning.cli.train import normalise_corpus_spec

    assert normalise_corpus_spec("fsdd") == "fsdd"
    monkeypatch.chdir(fsdd_root.parent)
    assert normalise_corpus_spec(f"fsdd:{fsdd_root.name}") == f"fsdd:{fsdd_root.resolve()}"


@pytest.mark.parametrize(
    "extra, culprit",
    [
        (["--model", "no-such-model"], "no-such-model"),
        (["--model-option", "widthx=3"], "widthx"),
        (["--set", "epoch=3"], "epoch"),
        (["--set", "lr=-1"], "lr"),
        (["--set", "optimizer=lion"], "lion"),
        (["--set", "seed=4"], "--seed"),
        (["--set", "noequals"], "noequals"),
        (["--corpus", "no-such-corpus"], "no-such-corpus"),
        (["--corpus", "fsdd:/no/such/folder"], "/no/such/folder"),
    ],
)
def test_bad_input_fails_before_any_work_with_a_message_naming_it(extra, culprit, tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = ["train", "--task", "kws", "--corpus", "fsdd", "--out", str(out), "--cache-dir", str(cache), "--no-progress"]
    status = main(argv + extra)
    assert status == 2
    assert culprit in capsys.readouterr().err
    assert not out.exists() and not cache.exists()  # nothing was loaded, computed or written


def test_unknown_task_is_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "asr", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "asr" in capsys.readouterr().err
