"""Safe model checkpoints: a folder with `model.safetensors` and `metadata.json`.

Loading never executes code: the weights are read with safetensors and the architecture is
rebuilt from the JSON `build_args` through the model registry (no pickle, no `torch.load`, no
download). A checkpoint is refused with a CheckpointError naming the folder when a file is
missing, the weights do not match the sha256 recorded in the metadata, the format version is
not supported, or the labels / feature spec differ from what the caller's data uses.

A save builds the whole folder under a temporary name and moves it into place when complete
(`io.atomic_directory`), so an interrupted save leaves the previous checkpoint intact; the
next save of the same folder removes the temporaries an interrupted one left beside it.

metadata.json holds the caller's keys (label_names, feature_spec, corpus {name, fingerprint,
spec}, split, train_config, metrics, history, ...) plus these, always written by `save_checkpoint`:
`format_version`, `version` (the package version), `model` (the model's build_args) and
`weights_sha256`; plus `model_files` ({file name: sha256}) for a model built from a file that
is not weights (an imported TorchScript archive, from `model.checkpoint_files()`): the file is
written beside the weights, checked against its sha256 on loading and handed to the model layer
(`registry.remember_model_file`); whether it may run is the model layer's decision.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..config import ConfigError
from ..io import atomic_directory, read_json, remove_leftovers, sha256_bytes, sha256_file, sha256_json
from ..registry import UnknownNameError
from .base import SpeechClassifier
from .registry import rebuild_model, remember_model_file

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
RESERVED_KEYS = ("format_version", "version", "model", "weights_sha256", "model_files")


class CheckpointError(ValueError):
    """A checkpoint folder cannot be used; the message names the folder and the reason."""


# --- saving ----------------------------------------------------------------------------------


def save_checkpoint(folder: str | Path, model: SpeechClassifier, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write `model` and `metadata` to `folder` atomically; returns the folder.

    `metadata` must be JSON-serialisable (dataclasses are converted). Its reserved keys
    (format_version, version, model, weights_sha256) are always recomputed, so metadata read
    from an earlier checkpoint can be passed back in.
    """
    build_args = getattr(model, "build_args", None)
    if not isinstance(build_args, dict):
        raise CheckpointError(f"{folder}: the model has no build_args; build it with create_model")
    folder = Path(folder)
    remove_leftovers(folder)  # of an earlier save of this folder that was killed mid-write
    with atomic_directory(folder) as staging:
        save_file(state_tensors(model), str(staging / WEIGHTS_FILE))
        record = {key: jsonable(value) for key, value in dict(metadata or {}).items() if key not in RESERVED_KEYS}
        record.update(
            format_version=FORMAT_VERSION,
            version=__version__,
            model=jsonable(build_args),
            weights_sha256=sha256_file(staging / WEIGHTS_FILE),
        )
        files = model_files_of(model)
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if files:
            record["model_files"] = {name: sha256_bytes(data) for name, data in files.items()}
        write_json(staging / METADATA_FILE, record)
    return folder


def model_files_of(model: torch.nn.Module) -> dict[str, bytes]:
    """{file name: bytes} the model's architecture is built from, besides its weights (usually none)."""
    files = model.checkpoint_files() if callable(getattr(model, "checkpoint_files", None)) else {}
    for name in files:
        if name in (WEIGHTS_FILE, METADATA_FILE) or Path(name).name != name or name.startswith("."):
            raise CheckpointError(f"model file name {name!r} is not a plain file name of its own")
    return files


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU tensors that own their memory (safetensors refuses shared storage)."""
    return {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}


def jsonable(value: Any) -> Any:
    """`value` with dataclasses, tuples and paths turned into JSON types (anything else is kept)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, record: dict) -> None:
    """Plain write: the caller's staging folder makes it atomic. TypeError names a bad key."""
    try:
        text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"checkpoint metadata is not JSON-serialisable: {error}") from None
    path.write_text(text + "\n", encoding="utf-8")


# --- loading ---------------------------------------------------------------------------------


def load_checkpoint(
    folder: str | Path,
    expect_label_names: Sequence[str] | None = None,
    expect_feature_spec: Any = None,
    device: str | torch.device = "cpu",
) -> tuple[SpeechClassifier, dict]:
    """Rebuild the model saved in `folder` and return (model in eval mode, metadata).

    `expect_label_names` / `expect_feature_spec` (a FeatureSpec or its dict), when given, must
    equal the checkpoint's; otherwise CheckpointError says which differs and how.
    """
    folder = Path(folder)
    metadata = read_metadata(folder)
    if expect_label_names is not None:
        check_label_names(folder, metadata, list(expect_label_names))
    if expect_feature_spec is not None:
        check_feature_spec(folder, metadata, expect_feature_spec)
    weights = verified_weights_path(folder, metadata)
    load_model_files(folder, metadata)
    model = rebuild_from_metadata(folder, metadata)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {folder}: {WEIGHTS_FILE} is not a safetensors file ({error})") from None
    load_state(folder, model, state)
    return model.to(device).eval(), metadata


def read_metadata(folder: Path) -> dict:
    """metadata.json of `folder`, after checking both files exist and the format version."""
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder}: folder not found")
    for name in (WEIGHTS_FILE, METADATA_FILE):
        if not (folder / name).is_file():
            raise CheckpointError(f"checkpoint {folder}: {name} is missing")
    try:
        metadata = read_json(folder / METADATA_FILE, what="checkpoint metadata")
    except ValueError as error:
        raise CheckpointError(f"checkpoint {folder}: {error}") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"checkpoint {folder}: {METADATA_FILE} does not hold a JSON object")
    version = metadata.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise CheckpointError(
            f"checkpoint {folder}: format_version {version!r} is not supported "
            f"(this is version {__version__}, which reads format {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))})"
        )
    for key in ("model", "weights_sha256"):
        if key not in metadata:
            raise CheckpointError(f"checkpoint {folder}: {METADATA_FILE} lacks {key!r}")
    return metadata


def verified_weights_path(folder: Path, metadata: dict) -> Path:
    """The weights file, after checking its sha256 against the metadata."""
    weights = folder / WEIGHTS_FILE
    actual = sha256_file(weights)
    if actual != metadata["weights_sha256"]:
        raise CheckpointError(
            f"checkpoint {folder}: {WEIGHTS_FILE} has sha256 {actual[:12]}..., but the metadata records "
            f"{str(metadata['weights_sha256'])[:12]}...; the weights were changed or corrupted"
        )
    return weights


def load_model_files(folder: Path, metadata: dict) -> None:
    """Read the model files the metadata lists, check their sha256 and put them in the content store."""
    listed = metadata.get("model_files") or {}
    if not isinstance(listed, dict):
        raise CheckpointError(f"checkpoint {folder}: model_files in {METADATA_FILE} is not an object")
    for name, expected in listed.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise CheckpointError(f"checkpoint {folder}: model file {name} is missing")
        data = path.read_bytes()
        if sha256_bytes(data) != expected:
            raise CheckpointError(
                f"checkpoint {folder}: {name} has sha256 {sha256_bytes(data)[:12]}..., but the metadata records "
                f"{str(expected)[:12]}...; the file was changed or corrupted"
            )
        remember_model_file(data)


def rebuild_from_metadata(folder: Path, metadata: dict) -> SpeechClassifier:
    try:
        return rebuild_model(metadata["model"])
    except (UnknownNameError, ConfigError, TypeError) as error:
        raise CheckpointError(f"checkpoint {folder}: cannot rebuild the model ({error})") from None


def load_state(folder: Path, model: SpeechClassifier, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` into `model`; every key must match in name and shape."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"missing tensors {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    if wrong_shape:
        problems.append(f"tensors of the wrong shape {', '.join(wrong_shape[:5])}")
    if problems:
        raise CheckpointError(f"checkpoint {folder}: weights do not fit the model: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)


def check_label_names(folder: Path, metadata: dict, expected: list[str]) -> None:
    """CheckpointError unless the checkpoint's label_names equal `expected` (same names, same order)."""
    stored = metadata.get("label_names")
    if stored is None:
        raise CheckpointError(f"checkpoint {folder}: has no label_names to compare with the data's")
    if len(stored) != len(expected):
        raise CheckpointError(
            f"checkpoint {folder}: checkpoint has {len(stored)} labels ({preview(stored)}), "
            f"data has {len(expected)} ({preview(expected)})"
        )
    for index, (ours, theirs) in enumerate(zip(stored, expected)):
        if ours != theirs:
            raise CheckpointError(
                f"checkpoint {folder}: label {index} is {ours!r} in the checkpoint but {theirs!r} in the data"
            )


def check_feature_spec(folder: Path, metadata: dict, expected: Any) -> None:
    """CheckpointError unless the checkpoint's feature_spec equals `expected`, naming each differing field."""
    stored = metadata.get("feature_spec")
    wanted = jsonable(expected)
    if stored is None:
        raise CheckpointError(f"checkpoint {folder}: has no feature_spec to compare with the data's")
    differences = [
        f"{key}: checkpoint {stored.get(key)!r}, data {wanted.get(key)!r}"
        for key in sorted(set(stored) | set(wanted))
        if stored.get(key) != wanted.get(key)
    ]
    if differences:
        raise CheckpointError(f"checkpoint {folder}: feature spec differs ({'; '.join(differences)})")


def preview(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(map(str, names[:limit]))
    return shown + (", ..." if len(names) > limit else "")


# --- auditing --------------------------------------------------------------------------------


def checkpoint_sha256(folder: str | Path) -> str:
    """A stable hash of a checkpoint: its weights plus its metadata (key order and formatting ignored).

    Verifies the weights against the metadata first, so a tampered checkpoint cannot be hashed.
    """
    folder = Path(folder)
    metadata = read_metadata(folder)
    verified_weights_path(folder, metadata)
    # The metadata holds the weights' sha256, so hashing it covers the weights too.
    return sha256_json(metadata)
