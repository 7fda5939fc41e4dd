"""The model registry: every architecture is a factory function registered by name.

`create_model(name, num_classes, **options)` builds a `SpeechClassifier`; an unknown name raises
UnknownNameError listing the valid ones, an unknown option raises ConfigError naming it. Each
size is its own registered entry (`whisper-tiny`, `whisper-base`, ...), not a subclass.

Each built model carries `model.build_args = {"name", "num_classes", "options"}` with every
option resolved, so `rebuild_model(model.build_args)` makes the same architecture again (with
fresh random weights and without downloading anything). Checkpoints rely on this to restore a
model, and methods that need a second copy of an architecture (e.g. a randomly initialised
"incompetent teacher") use it too.

`model_info(name)` says what a name is: its input kind, family, and whether it is a real-size
backbone (GPU territory) or a small / tiny model that the CPU test-suite runs.

Models brought in by `speech-unlearn import` (a Hugging Face classifier, a TorchScript archive,
a `module:factory`) register their kinds in `IMPORTED_MODELS` instead: the same registry
pattern, but they cannot be trained from a name alone (they need the imported config), so
`create_model` and `train` do not offer them; `rebuild_model` rebuilds both. An architecture
that needs a file beside its weights (a TorchScript archive) finds it by sha256 in the
content store `remember_model_file` / `model_file`, which checkpoints fill when they load.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..config import ConfigError, describe_fields, from_mapping
from ..registry import Registry
from .base import SpeechClassifier

ModelFactory = Callable[..., SpeechClassifier]
MODELS: Registry[ModelFactory] = Registry("model")
IMPORTED_MODELS: Registry[ModelFactory] = Registry("imported model kind")
MODEL_FILES: dict[str, bytes] = {}  # sha256 -> bytes of files architectures are built from


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model name stands for."""

    name: str
    input_kind: str  # "logmel" | "waveform"
    family: str  # "cnn", "tcn", "tdnn", "whisper", "wav2vec2", "hubert"
    real_size: bool  # True: a published-size backbone (too big for the CPU test-suite)
    parameters: str  # rough parameter count, for listings, e.g. "0.11 M", "95 M"
    description: str
    options_class: type  # the dataclass of the factory's keyword options
    default_source: str | None = None  # hub id used when pretrained weights are requested


MODEL_INFO: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: register a factory under `info.name` and record its ModelInfo."""

    def add(factory: ModelFactory) -> ModelFactory:
        MODELS.register(info.name)(factory)
        MODEL_INFO[info.name] = info
        return factory

    return add


def model_names() -> list[str]:
    """Every registered model name, sorted."""
    return MODELS.names()


def model_info(name: str) -> ModelInfo:
    """The ModelInfo of `name`; UnknownNameError listing the valid names otherwise."""
    MODELS.get(name)  # raises with the list of valid names
    return MODEL_INFO[name]


def cpu_testable_names() -> list[str]:
    """Names small enough to train in the CPU test-suite (the small CNNs and tiny transformers)."""
    return [name for name in model_names() if not MODEL_INFO[name].real_size]


def real_size_names() -> list[str]:
    """Published-size backbones (build them on the meta device to inspect them on a CPU)."""
    return [name for name in model_names() if MODEL_INFO[name].real_size]


def describe_model_options(name: str) -> list[tuple[str, str, Any, str]]:
    """(option, type, default, help) rows for model `name`, for help texts and listings."""
    return describe_fields(model_info(name).options_class)


def create_model(name: str, num_classes: int, **options: Any) -> SpeechClassifier:
    """Build model `name` with a `num_classes`-way linear head.

    `options` are the factory's keyword options (see `describe_model_options`); the returned
    model's `build_args` records them fully resolved.
    """
    factory = MODELS.get(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"model {name}: num_classes must be a positive integer, got {num_classes!r}")
    model = factory(num_classes, **options)
    if not isinstance(getattr(model, "build_args", None), dict):
        raise TypeError(f"model factory {name!r} did not set model.build_args")
    return model


def rebuild_model(build_args: Mapping[str, Any]) -> SpeechClassifier:
    """The architecture described by `build_args` (as stored in a checkpoint), randomly initialised.

    Never downloads: transformer entries store their full backbone config in the options.
    """
    missing = [key for key in ("name", "num_classes", "options") if key not in build_args]
    if missing:
        raise ConfigError(f"model build_args lacks {', '.join(missing)}")
    options = copy.deepcopy(dict(build_args["options"]))
    if build_args["name"] in IMPORTED_MODELS:
        return create_imported_model(build_args["name"], build_args["num_classes"], **options)
    return create_model(build_args["name"], build_args["num_classes"], **options)


def rebuild_starting_model(build_args: Mapping[str, Any]) -> SpeechClassifier:
    """The model training started from: the recorded architecture with the pretrained backbone
    weights it was first loaded with (`build_args["pretrained_from"]`, transformer backbones), and
    a fresh head; without a recorded source, `rebuild_model`'s random weights.

    Retrain must start where the Original started: a Whisper / wav2vec 2.0 / HuBERT classifier
    fine-tuned from pretrained weights is not reproduced by training a random encoder.
    """
    source = build_args.get("pretrained_from")
    if not source:
        return rebuild_model(build_args)
    options = copy.deepcopy(dict(build_args["options"]))
    options.update(pretrained=True, source=source, backbone_config=None)
    return create_model(build_args["name"], build_args["num_classes"], **options)


def create_imported_model(kind: str, num_classes: int, **options: Any) -> SpeechClassifier:
    """Build an imported model of `kind` (see IMPORTED_MODELS) from its recorded options."""
    factory = IMPORTED_MODELS.get(kind)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"model {kind}: num_classes must be a positive integer, got {num_classes!r}")
    return factory(num_classes, **options)


def remember_model_file(data: bytes) -> str:
    """Keep `data` in the content store for this process; returns its sha256."""
    digest = hashlib.sha256(data).hexdigest()
    MODEL_FILES[digest] = data
    return digest


def model_file(sha256: str, what: str) -> bytes:
    """The stored bytes with this sha256; ConfigError naming `what` when they were never loaded."""
    try:
        return MODEL_FILES[sha256]
    except KeyError:
        raise ConfigError(
            f"{what} {sha256[:12]}... is not loaded in this process; load the checkpoint that holds it "
            "(load_checkpoint) or import the model again"
        ) from None


def resolve_options(options_class: type, options: Mapping[str, Any], model_name: str) -> Any:
    """Validate `options` against the factory's options dataclass (unknown keys -> ConfigError)."""
    return from_mapping(options_class, options, where=f"model {model_name}")


def record_build_args(model: SpeechClassifier, name: str, num_classes: int, options: Any) -> SpeechClassifier:
    """Attach `build_args` (name, num_classes, resolved options as a plain dict) to `model`.

    The options go through JSON once, so `build_args` equals what a checkpoint stores and reads
    back (tuples become lists, integer dict keys become strings).
    """
    resolved = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    model.build_args = {"name": name, "num_classes": num_classes, "options": json.loads(json.dumps(resolved))}
    return model
