"""Checkpoints: exact round trips for every CPU-testable model, and every refusal the loader promises."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from speech_unlearning import __version__
from speech_unlearning.data.features import FeatureSpec
from speech_unlearning.models import (
    CheckpointError,
    checkpoint_sha256,
    cpu_testable_names,
    create_model,
    load_checkpoint,
    save_checkpoint,
)
from speech_unlearning.models import checkpoint as checkpoint_module

DIGITS = [str(d) for d in range(10)]
SPEC = FeatureSpec()


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These batches are tiny: on a shared CPU, extra intra-op threads cost more than they save."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def example_inputs(model, batch: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    shape = (batch, SPEC.n_mels, SPEC.num_frames) if model.input_kind == "logmel" else (batch, SPEC.clip_samples)
    return torch.randn(shape, generator=generator)


def trained_a_little(name: str, seed: int = 0):
    """A model after one optimiser step, so weights and BatchNorm statistics differ from a fresh build."""
    torch.manual_seed(seed)
    model = create_model(name, len(DIGITS)).train()
    inputs = example_inputs(model, batch=4)
    F.cross_entropy(model(inputs), torch.tensor([0, 1, 2, 3])).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    return model.eval()


def metadata(**extra):
    return {"label_names": DIGITS, "feature_spec": SPEC, "metrics": {"test_accuracy": 0.5}, **extra}


@pytest.fixture
def saved(tmp_path):
    """(folder, model) of a saved kws-resnet checkpoint."""
    model = trained_a_little("kws-resnet")
    folder = save_checkpoint(tmp_path / "ckpt", model, metadata())
    return folder, model


def outputs(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(inputs)


@pytest.mark.parametrize("name", cpu_testable_names())
def test_round_trip_gives_identical_outputs(name, tmp_path):
    model = trained_a_little(name)
    save_checkpoint(tmp_path / "ckpt", model, metadata())
    loaded, meta = load_checkpoint(tmp_path / "ckpt", expect_label_names=DIGITS, expect_feature_spec=SPEC)
    inputs = example_inputs(model)
    assert torch.equal(outputs(loaded, inputs), outputs(model, inputs))
    assert not loaded.training
    assert meta["model"]["name"] == name and meta["model"]["options"] == model.build_args["options"]


def test_metadata_records_format_version_hash_and_callers_keys(saved):
    folder, model = saved
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["format_version"] == checkpoint_module.FORMAT_VERSION
    assert meta["version"] == __version__
    assert meta["label_names"] == DIGITS and meta["feature_spec"]["n_mels"] == 40
    assert meta["metrics"] == {"test_accuracy": 0.5}
    assert len(meta["weights_sha256"]) == 64
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.safetensors"]


def test_reserved_keys_are_recomputed_not_taken_from_the_caller(tmp_path):
    model = trained_a_little("kws-resnet")
    folder = save_checkpoint(tmp_path / "ckpt", model, metadata(weights_sha256="0" * 64, format_version=99))
    _, meta = load_checkpoint(folder)  # would be refused if the bogus values had been kept
    assert meta["format_version"] == checkpoint_module.FORMAT_VERSION


def test_changed_weights_are_refused(saved, tmp_path):
    folder, _ = saved
    other = save_checkpoint(tmp_path / "other", trained_a_little("kws-resnet", seed=1), metadata())
    os.replace(other / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="sha256") as caught:
        load_checkpoint(folder)
    assert str(folder) in str(caught.value)
    with pytest.raises(CheckpointError, match="sha256"):
        checkpoint_sha256(folder)


def edit_metadata(folder: Path, **changes) -> None:
    meta = json.loads((folder / "metadata.json").read_text())
    meta.update(changes)
    (folder / "metadata.json").write_text(json.dumps(meta))


def test_incompatible_format_version_is_refused(saved):
    folder, _ = saved
    edit_metadata(folder, format_version=999)
    with pytest.raises(CheckpointError, match="format_version 999"):
        load_checkpoint(folder)


@pytest.mark.parametrize("missing", ["model.safetensors", "metadata.json"])
def test_missing_file_is_named(saved, missing):
    folder, _ = saved
    (folder / missing).unlink()
    with pytest.raises(CheckpointError, match=f"{missing} is missing"):
        load_checkpoint(folder)


def test_label_count_mismatch_says_both_counts(saved):
    folder, _ = saved
    with pytest.raises(CheckpointError, match="checkpoint has 10 labels .*data has 12"):
        load_checkpoint(folder, expect_label_names=DIGITS + ["_unknown_", "_silence_"])


def test_label_name_mismatch_names_the_label(saved):
    folder, _ = saved
    renamed = DIGITS[:3] + ["three"] + DIGITS[4:]
    with pytest.raises(CheckpointError, match="label 3 is '3' in the checkpoint but 'three' in the data"):
        load_checkpoint(folder, expect_label_names=renamed)


def test_feature_spec_mismatch_names_the_field(saved):
    folder, _ = saved
    with pytest.raises(CheckpointError, match="n_mels: checkpoint 40, data 80"):
        load_checkpoint(folder, expect_feature_spec=FeatureSpec(n_mels=80))


def test_interrupted_save_keeps_the_previous_checkpoint(saved):
    folder, model = saved
    before = checkpoint_sha256(folder)
    newer = trained_a_little("kws-resnet", seed=1)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_checkpoint(folder, newer, metadata(train_config=object()))  # fails after the weights are written
    assert checkpoint_sha256(folder) == before
    loaded, _ = load_checkpoint(folder)
    inputs = example_inputs(model)
    assert torch.equal(outputs(loaded, inputs), outputs(model, inputs))
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".tmp-")] == []


def test_interruption_while_writing_weights_keeps_the_previous_checkpoint(saved, monkeypatch):
    folder, _ = saved
    before = checkpoint_sha256(folder)

    def interrupted_save(tensors, path):
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module, "save_file", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, trained_a_little("kws-resnet", seed=1), metadata())
    assert checkpoint_sha256(folder) == before
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".tmp-")] == []


class Payload:
    """Unpickling this creates `marker`: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_in_place_of_the_weights_is_never_executed(saved, tmp_path):
    folder, _ = saved
    marker = tmp_path / "code-ran"
    weights = folder / "model.safetensors"
    weights.write_bytes(pickle.dumps(Payload(marker)))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    # Make the hash agree, so the loader gets as far as parsing the file.
    edit_metadata(folder, weights_sha256=checkpoint_module.sha256_file(weights))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_loading_never_unpickles(saved, monkeypatch):
    folder, model = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("checkpoint loading must not unpickle")

    for target, attribute in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(target, attribute, forbidden)
    loaded, _ = load_checkpoint(folder)
    inputs = example_inputs(model)
    assert torch.equal(outputs(loaded, inputs), outputs(model, inputs))


def test_checkpoint_sha256_is_stable_and_tracks_content(tmp_path):
    model = trained_a_little("kws-resnet")
    first = checkpoint_sha256(save_checkpoint(tmp_path / "a", model, metadata()))
    assert checkpoint_sha256(save_checkpoint(tmp_path / "b", model, metadata())) == first
    assert checkpoint_sha256(save_checkpoint(tmp_path / "c", model, metadata(metrics={"test_accuracy": 0.6}))) != first
    changed = trained_a_little("kws-resnet", seed=1)
    assert checkpoint_sha256(save_checkpoint(tmp_path / "d", changed, metadata())) != first


def test_model_without_build_args_is_refused(tmp_path):
    model = create_model("kws-resnet", 10)
    del model.build_args
    with pytest.raises(CheckpointError, match="build_args"):
        save_checkpoint(tmp_path / "ckpt", model, metadata())
    assert not (tmp_path / "ckpt").exists()


def test_pretrained_backbone_reloads_without_its_source(tmp_path, monkeypatch):
    import shutil

    import transformers

    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 64), conv_kernel=(10, 64),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )
    transformers.Wav2Vec2Model(config).save_pretrained(tmp_path / "source")
    model = create_model("wav2vec2-base", len(DIGITS), source=str(tmp_path / "source")).eval()
    save_checkpoint(tmp_path / "ckpt", model, metadata())
    shutil.rmtree(tmp_path / "source")

    def no_download(*args, **kwargs):
        raise AssertionError("loading a checkpoint must not call from_pretrained")

    monkeypatch.setattr(transformers.Wav2Vec2Model, "from_pretrained", no_download)
    loaded, meta = load_checkpoint(tmp_path / "ckpt")
    inputs = example_inputs(model)
    assert torch.equal(outputs(loaded, inputs), outputs(model, inputs))
    assert meta["model"]["pretrained_from"] == str(tmp_path / "source")
