"""Importing a Hugging Face audio classifier from a local `save_pretrained` folder.

`import_hf_classifier(folder, label_names)` reads the folder of an
`AutoModelForAudioClassification` (config.json, model.safetensors, preprocessor_config.json) and
returns an `HFAudioClassifier` (models/hf_classifier.py) with the deployed model's own head,
labels and front end. Its head rows are put in the corpus's label order (`label_names`); the
class names must be the same set on both sides, otherwise the error lists what each side has
alone. Weights are read with safetensors only (`use_safetensors=True`): a folder holding only a
pickled pytorch_model.bin is refused. Every refusal is an HFImportError naming the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..config import ConfigError
from .hf_classifier import (
    CONFIG_FILE,
    PREPROCESSOR_FILE,
    WEIGHT_FILES,
    Family,
    HFAudioClassifier,
    HFClassifierOptions,
    HFImportError,
    family_of,
    quiet_transformers,
    resolve_init,
    transformers_config,
    wrap,
)


def import_hf_classifier(
    folder: str | Path, label_names: Sequence[str], init: str | None = None, freeze_feature_encoder: bool | None = None
) -> HFAudioClassifier:
    """The classifier saved in `folder`, its head rows in the order of `label_names`.

    `init` is Retrain's starting point ("scratch", a pretrained folder or .safetensors file, or
    None); a path is checked to hold weights now and its sha256 recorded. HFImportError names
    the folder and the problem: missing files, an unsupported architecture, a feature extractor
    that is not the model's, weights that do not fill the whole classifier, labels that differ.
    """
    folder = checked_folder(folder)
    config_values = read_json_object(folder / CONFIG_FILE)
    architecture = (config_values.get("architectures") or [None])[0]
    if architecture is None:
        raise HFImportError(f"{folder / CONFIG_FILE}: no 'architectures' entry saying which model class this is")
    family = family_of(architecture, str(folder))
    settings = read_json_object(folder / PREPROCESSOR_FILE)
    order = label_order(folder, config_values, list(label_names))
    network = load_network(folder, config_values)
    reorder_head(network, order, family)
    config_values = {**config_values, **label_maps(label_names)}
    init, init_sha256 = resolve_init(init)
    options = HFClassifierOptions(config_values, settings, init, init_sha256, freeze_feature_encoder)
    try:
        model = wrap(network, options)
    except ConfigError as error:
        raise HFImportError(f"{folder}: {error}") from None
    model.source_label_order = [label_names[order.index(index)] for index in range(len(order))]
    return model


def checked_folder(folder: str | Path) -> Path:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise HFImportError(f"{folder}: no such folder (expected a save_pretrained folder)")
    missing = [name for name in (CONFIG_FILE, PREPROCESSOR_FILE) if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append("model.safetensors (a pickled pytorch_model.bin is not read)")
    if missing:
        raise HFImportError(
            f"{folder}: not a complete save_pretrained folder of an audio classifier; missing {', '.join(missing)} "
            "(save the feature extractor too: feature_extractor.save_pretrained(folder))"
        )
    return folder.resolve()


def read_json_object(path: Path) -> dict:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HFImportError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(values, dict):
        raise HFImportError(f"{path}: does not hold a JSON object")
    return values


def label_order(folder: Path, config_values: dict, label_names: list[str]) -> list[int]:
    """For each corpus label, the model's output index of the same name; HFImportError listing both sides."""
    id2label = {int(index): str(name) for index, name in (config_values.get("id2label") or {}).items()}
    model_labels = [id2label.get(index) for index in range(len(id2label))]
    if sorted(map(str, model_labels)) != sorted(label_names) or len(set(model_labels)) != len(model_labels):
        only_model = sorted(set(map(str, model_labels)) - set(label_names))
        only_data = sorted(set(label_names) - set(map(str, model_labels)))
        raise HFImportError(
            f"{folder}: the model's labels do not match the corpus's.\n"
            f"  model ({len(model_labels)}): {', '.join(map(str, model_labels))}\n"
            f"  corpus ({len(label_names)}): {', '.join(label_names)}\n"
            f"  only in the model: {', '.join(only_model) or '-'}; only in the corpus: {', '.join(only_data) or '-'}\n"
            "  (set id2label in config.json to the corpus's class names)"
        )
    position = {name: index for index, name in enumerate(model_labels)}
    return [position[name] for name in label_names]


def label_maps(label_names: Sequence[str]) -> dict:
    return {
        "id2label": {str(index): name for index, name in enumerate(label_names)},
        "label2id": {name: index for index, name in enumerate(label_names)},
    }


def load_network(folder: Path, config_values: dict) -> nn.Module:
    """from_pretrained; every weight of the classifier must come from the folder."""
    from transformers import AutoModelForAudioClassification

    try:
        config = transformers_config(config_values)
        with quiet_transformers():
            network, info = AutoModelForAudioClassification.from_pretrained(
                str(folder), config=config, use_safetensors=True, output_loading_info=True
            )
    except (OSError, ValueError, ConfigError) as error:
        raise HFImportError(f"{folder}: cannot load the model ({error})") from None
    missing = list(info.get("missing_keys", []))
    mismatched = info.get("mismatched_keys", [])
    if missing or mismatched:
        shown = ", ".join(sorted(map(str, [*missing, *mismatched]))[:5])
        raise HFImportError(
            f"{folder}: the weights do not fill the classifier ({shown} ...): a base model saved without its "
            "classification head? Import a fine-tuned *ForSequenceClassification / *ForAudioClassification folder"
        )
    return network.eval()


def reorder_head(network: nn.Module, order: list[int], family: Family) -> None:
    """Put the output rows in corpus order: row i becomes the model's row order[i]."""
    head = network.classifier.dense if family.name == "ast" else network.classifier
    with torch.no_grad():
        head.weight.copy_(head.weight[order].clone())
        head.bias.copy_(head.bias[order].clone())
