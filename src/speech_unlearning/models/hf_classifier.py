"""Hugging Face audio classifiers as toolkit models: their own head, labels and front end kept.

An `HFAudioClassifier` (made from a `save_pretrained` folder by `import_hf_classifier`,
models/hf_import.py) is a `SpeechClassifier` that takes 16 kHz waveforms (B, samples), runs the
feature extractor's front end in torch (models/frontends.py), the network's encoder, its
projector and pooling, and its own classification head. Nothing is replaced: the logits are the
deployed model's, to float32 precision (tests/test_byom.py checks each architecture against
transformers with its feature extractor).

- `embed` returns what the head reads: the projected, mean-pooled hidden states (wav2vec 2.0
  family, Whisper) or the layer-normed pooled output (AST); `head` is the final nn.Linear, so
  methods that train the head alone or mask its rows (SSD, SalUn, Calibrated) work unchanged.
- Training-only randomness is switched off inside the toolkit (SpecAugment masking, LayerDrop),
  as for the registry backbones: runs are repeatable given the seed and every trainable
  parameter gets a gradient at every step (the unused `masked_spec_embed` vector is frozen, and
  kept, so an export still holds it). Inference is unaffected; the recorded config keeps its
  original values, so `hf_network` (export) writes them back unchanged.
- Clips are the toolkit's: zero-padded or cropped to the corpus clip length before the front end
  (wav2vec 2.0's normalisation then covers the padding too; transformers' extractor, called on
  an unpadded recording, would normalise the recording alone).

Retrain needs the model's starting point, which for a fine-tuned classifier is not random
weights. The import records it (`init`): "scratch" (the model was trained from random weights),
a path (a `save_pretrained` folder or a .safetensors file of the pretrained model it was
fine-tuned from: its encoder weights are loaded, the projector and head start random, as when
transformers fine-tunes), or nothing, in which case `starting_point` refuses and says how to
record one. `rebuild_model` itself always gives random weights (the incompetent teacher of
Bad-Teaching, and the architecture a checkpoint's weights are loaded into).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..config import ConfigError, require
from ..io import sha256_file
from .base import SpeechClassifier
from .frontends import KaldiFbankFrontEnd, WaveformNormaliser, WhisperFrontEnd
from .registry import IMPORTED_MODELS, record_build_args, resolve_options

KIND = "hf-audio-classifier"
SAMPLE_RATE = 16_000
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class HFImportError(ValueError):
    """A folder cannot be imported as an audio classifier; the message names it and says why."""


# --- the architectures we know how to run -----------------------------------------------------


@dataclass(frozen=True)
class Family:
    """How one kind of transformers audio classifier reads its input and pools its states."""

    name: str  # "ssl" (wav2vec 2.0 and relatives), "whisper", "ast"
    input_name: str  # the keyword the encoder takes its input under
    feature_extractor: str  # the transformers feature-extractor class these models ship with
    freeze_feature_encoder: bool  # the default of the import option
    encoder_attribute: str | None = None  # where the network keeps its encoder; None: its base_model_prefix

    def encoder_name(self, network: nn.Module) -> str:
        return self.encoder_attribute or network.base_model_prefix


FAMILIES = {
    "ssl": Family("ssl", "input_values", "Wav2Vec2FeatureExtractor", True),
    "whisper": Family("whisper", "input_features", "WhisperFeatureExtractor", False, "encoder"),
    "ast": Family("ast", "input_values", "ASTFeatureExtractor", False),
}

# transformers class name -> family. Each one is checked against transformers in the tests.
ARCHITECTURES = {
    "Wav2Vec2ForSequenceClassification": "ssl",
    "HubertForSequenceClassification": "ssl",
    "WavLMForSequenceClassification": "ssl",
    "Data2VecAudioForSequenceClassification": "ssl",
    "UniSpeechSatForSequenceClassification": "ssl",
    "WhisperForAudioClassification": "whisper",
    "ASTForAudioClassification": "ast",
}


def family_of(architecture: str, where: str) -> Family:
    """The Family of a transformers class name; HFImportError listing the supported ones otherwise."""
    if architecture not in ARCHITECTURES:
        raise HFImportError(
            f"{where}: {architecture} is not a supported audio classifier; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return FAMILIES[ARCHITECTURES[architecture]]


# --- options (what a checkpoint records) ------------------------------------------------------


@dataclass(frozen=True)
class HFClassifierOptions:
    """What rebuilds an imported Hugging Face classifier offline (recorded by the import)."""

    config: dict | None = field(
        default=None, metadata={"help": "the transformers config (config.json), labels in the corpus's order"}
    )
    feature_extractor: dict | None = field(
        default=None, metadata={"help": "the feature-extractor settings (preprocessor_config.json)"}
    )
    init: str | None = field(
        default=None,
        metadata={"help": "Retrain's starting point: 'scratch', or the pretrained folder / .safetensors file "
                          "the model was fine-tuned from; none: unknown (Retrain refuses)"},
    )  # fmt: skip
    init_sha256: str | None = field(default=None, metadata={"help": "sha256 of the init weights, checked when read"})
    freeze_feature_encoder: bool | None = field(
        default=None, metadata={"help": "freeze the convolutional front end (default: yes for wav2vec 2.0 kinds)"}
    )

    def __post_init__(self) -> None:
        require(isinstance(self.config, dict), "config", "a transformers config dict is required")
        require(isinstance(self.feature_extractor, dict), "feature_extractor", "feature-extractor settings are required")
        require(bool(self.config.get("architectures")), "config", "lacks 'architectures' (the model class)")


def architecture_of(config: dict) -> str:
    return config["architectures"][0]


# --- the model ----------------------------------------------------------------------------------


class HFAudioClassifier(SpeechClassifier):
    """A transformers audio classifier on 16 kHz waveforms: front end, encoder, pooling, its own head."""

    input_kind = "waveform"

    def __init__(self, network: nn.Module, options: HFClassifierOptions):
        # Not SpeechClassifier.__init__: the head is the network's own classifier, not a new Linear.
        nn.Module.__init__(self)
        self.architecture = architecture_of(options.config)
        self.family = family_of(self.architecture, KIND)
        self.front_end = build_front_end(self.family, options.feature_extractor)
        self.encoder = getattr(network, self.family.encoder_name(network))
        if self.family.name == "ast":
            self.head_norm, self.head = network.classifier.layernorm, network.classifier.dense
        else:
            self.projector, self.head = network.projector, network.classifier
            weighted = getattr(network.config, "use_weighted_layer_sum", False)
            self.layer_weights = network.layer_weights if weighted else None
        self.embedding_dim = self.head.in_features
        self.num_classes = self.head.out_features
        self.init = options.init
        self.init_sha256 = options.init_sha256
        self.switch_off_training_randomness()

    def switch_off_training_randomness(self) -> None:
        """No SpecAugment masking, no LayerDrop: transformers reads both at run time, from the shared
        config or from a module's own `layerdrop` copy (Whisper's encoder, wav2vec 2.0's adapter)."""
        config = self.encoder.config
        config.apply_spec_augment = False
        if hasattr(config, "layerdrop"):
            config.layerdrop = 0.0
        for module in self.encoder.modules():
            if isinstance(getattr(module, "layerdrop", None), float):
                module.layerdrop = 0.0
        if getattr(self.encoder, "masked_spec_embed", None) is not None:
            self.encoder.masked_spec_embed.requires_grad_(False)  # only masking reads it

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() != 2:
            raise ValueError(f"{self.architecture} expects waveforms (batch, samples), got {tuple(inputs.shape)}")
        features = self.front_end(inputs)
        if self.family.name == "ast":
            pooled = self.encoder(**{self.family.input_name: features}).pooler_output  # (B, H)
            return self.head_norm(pooled)
        return self.projector(self.hidden_states(features)).mean(dim=1)  # (B, P)

    def hidden_states(self, features: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states (B, T, H), or their learned weighted sum over layers."""
        if self.layer_weights is None:
            return self.encoder(**{self.family.input_name: features}).last_hidden_state
        states = self.encoder(**{self.family.input_name: features}, output_hidden_states=True).hidden_states
        stacked = torch.stack(states, dim=1)  # (B, layers + 1, T, H)
        weights = nn.functional.softmax(self.layer_weights, dim=-1)
        return (stacked * weights.view(-1, 1, 1)).sum(dim=1)

    def feature_encoder_parameters(self) -> list[nn.Parameter]:
        """The convolutional front end: the wav2vec 2.0 feature encoder, Whisper conv1 + conv2, AST's patch embedding."""
        if self.family.name == "ssl":
            return list(self.encoder.feature_extractor.parameters())
        if self.family.name == "whisper":
            return [*self.encoder.conv1.parameters(), *self.encoder.conv2.parameters()]
        return list(self.encoder.embeddings.patch_embeddings.parameters())

    def starting_point(self) -> "HFAudioClassifier":
        """The model Retrain trains from: random weights ("scratch") or the recorded pretrained encoder."""
        if self.init is None:
            raise ConfigError(
                f"Retrain of an imported {self.architecture} needs its starting point, which the import did not "
                "record: import it again with --init DIR (the pretrained model it was fine-tuned from, saved with "
                "save_pretrained) or --init scratch (it was trained from random weights)"
            )
        fresh = create_hf_classifier(self.num_classes, **copy.deepcopy(self.build_args["options"]))
        if self.init != "scratch":
            load_init_weights(fresh, self.init, self.init_sha256)
        return fresh.to(next(self.parameters()).device)


def build_front_end(family: Family, settings: dict) -> nn.Module:
    """The torch front end equal to the feature extractor `settings` describe (sampling rate 16 kHz)."""
    kind = settings.get("feature_extractor_type")
    if kind != family.feature_extractor:
        raise ConfigError(f"feature_extractor: {kind!r} does not fit this model; expected {family.feature_extractor}")
    rate = settings.get("sampling_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        raise ConfigError(f"feature_extractor: sampling_rate {rate} Hz; the toolkit's audio is {SAMPLE_RATE} Hz")
    if family.name == "ssl":
        return WaveformNormaliser() if settings.get("do_normalize", True) else nn.Identity()
    if family.name == "whisper":
        if settings.get("dither", 0.0):
            raise ConfigError("feature_extractor: dither adds random noise to every input; set it to 0.0")
        return WhisperFrontEnd(
            settings.get("feature_size", 80), settings.get("n_fft", 400), settings.get("hop_length", 160),
            settings.get("n_samples", 480_000), rate, settings.get("do_normalize", False),
        )  # fmt: skip
    return KaldiFbankFrontEnd(
        settings.get("num_mel_bins", 128), settings.get("max_length", 1024), rate,
        settings.get("do_normalize", True), settings.get("mean", -4.2677393), settings.get("std", 4.5689974),
    )  # fmt: skip


def freeze_feature_encoder(model: HFAudioClassifier, option: bool | None) -> None:
    if model.family.freeze_feature_encoder if option is None else option:
        for parameter in model.feature_encoder_parameters():
            parameter.requires_grad_(False)


# --- configs and networks -----------------------------------------------------------------------


def transformers_config(values: dict) -> Any:
    """A transformers config object from its dict (as config.json holds it)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = values.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"config: unknown transformers model_type {model_type!r}")
    try:
        return CONFIG_MAPPING[model_type].from_dict(dict(values))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config: not a valid {model_type} config ({error})") from None


def network_from_config(config: Any) -> nn.Module:
    """A randomly initialised transformers classifier of `config` (no download)."""
    from transformers import AutoModelForAudioClassification

    return AutoModelForAudioClassification.from_config(config)


def wrap(network: nn.Module, options: HFClassifierOptions) -> HFAudioClassifier:
    """The toolkit model around `network`, frozen as asked, with build_args recorded."""
    model = HFAudioClassifier(network, options)
    freeze_feature_encoder(model, options.freeze_feature_encoder)
    return record_build_args(model, KIND, model.num_classes, options)


@IMPORTED_MODELS.register(KIND)
def create_hf_classifier(num_classes: int, **options: Any) -> HFAudioClassifier:
    """The imported architecture with random weights (what a checkpoint's weights are loaded into)."""
    resolved = resolve_options(HFClassifierOptions, options, KIND)
    family_of(architecture_of(resolved.config), KIND)
    config = transformers_config(resolved.config)
    if config.num_labels != num_classes:
        raise ConfigError(f"model {KIND}: the config has {config.num_labels} labels, num_classes is {num_classes}")
    return wrap(network_from_config(config), resolved)


# The wrapper's parameter names -> the transformers model's, per family (for exporting).
def hf_name_prefixes(model: HFAudioClassifier, base_prefix: str) -> list[tuple[str, str]]:
    if model.family.name == "ast":
        return [("encoder.", f"{base_prefix}."), ("head_norm.", "classifier.layernorm."), ("head.", "classifier.dense.")]
    return [("encoder.", f"{base_prefix}."), ("projector.", "projector."), ("head.", "classifier."),
            ("layer_weights", "layer_weights")]  # fmt: skip


def hf_network(model: HFAudioClassifier) -> nn.Module:
    """The transformers model (in eval mode) holding `model`'s current weights, with its imported config."""
    network = network_from_config(transformers_config(model.build_args["options"]["config"]))
    prefixes = hf_name_prefixes(model, model.family.encoder_name(network))
    state = {}
    for name, tensor in model.state_dict().items():
        ours, theirs = next((a, b) for a, b in prefixes if name.startswith(a))
        state[theirs + name[len(ours) :]] = tensor
    network.load_state_dict(state, strict=True)
    return network.eval()


def feature_extractor_object(model: HFAudioClassifier) -> Any:
    """The transformers feature extractor the model's front end reproduces (for `save_pretrained`)."""
    import transformers

    settings = dict(model.build_args["options"]["feature_extractor"])
    return getattr(transformers, model.family.feature_extractor).from_dict(settings)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers without its progress bars and notices (restored afterwards): our commands report themselves."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# --- Retrain's starting point --------------------------------------------------------------------


def resolve_init(init: str | None) -> tuple[str | None, str | None]:
    """(recorded init, its sha256): None and "scratch" as given, a path made absolute and hashed."""
    if init is None or init == "scratch":
        return init, None
    files = init_weight_files(Path(init).expanduser())
    return str(Path(init).expanduser().resolve()), combined_sha256(files)


def init_weight_files(path: Path) -> list[Path]:
    """The safetensors files of a pretrained folder (single or sharded), or the file itself."""
    if path.is_file():
        if path.suffix != ".safetensors":
            raise HFImportError(f"--init {path}: expected a .safetensors file or a save_pretrained folder")
        return [path]
    if not path.is_dir():
        raise HFImportError(f"--init {path}: no such file or folder")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise HFImportError(f"--init {path}: holds no .safetensors weights")
    return files


def combined_sha256(files: list[Path]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + sha256_file(path).encode())
    return digest.hexdigest()


def load_init_weights(model: HFAudioClassifier, init: str, expected_sha256: str | None) -> None:
    """Load the encoder weights of the pretrained model at `init` into `model` (checked by sha256)."""
    from safetensors.torch import load_file

    files = init_weight_files(Path(init))
    if expected_sha256 is not None and combined_sha256(files) != expected_sha256:
        raise ConfigError(f"init {init}: the weights changed since the import (sha256 differs)")
    state: dict[str, torch.Tensor] = {}
    for path in files:
        state.update(load_file(str(path)))
    wanted = model.encoder.state_dict()
    prefix = best_prefix(state, wanted)
    found = {name: state[prefix + name] for name in wanted if prefix + name in state}
    missing = sorted(set(wanted) - set(found) - {"masked_spec_embed"})
    wrong = sorted(name for name, tensor in found.items() if tensor.shape != wanted[name].shape)
    if missing or wrong:
        raise ConfigError(
            f"init {init}: does not hold this model's encoder (missing {', '.join(missing[:3]) or '-'}; "
            f"wrong shape {', '.join(wrong[:3]) or '-'})"
        )
    model.encoder.load_state_dict(found, strict=False)


def best_prefix(state: dict[str, torch.Tensor], wanted: dict[str, torch.Tensor]) -> str:
    """The key prefix under which `state` holds the most encoder tensors ("" for a bare base-model save).

    Scored over every name, so a Whisper decoder, whose layers share names with the encoder's,
    loses to the encoder, which also has the convolutions and the positional table.
    """
    candidates = {
        key[: len(key) - len(name)]
        for key in state
        for name in wanted
        if key.endswith(name) and (len(key) == len(name) or key[len(key) - len(name) - 1] == ".")
    }
    if not candidates:
        return ""
    return max(sorted(candidates), key=lambda prefix: sum(prefix + name in state for name in wanted))


def is_hf_classifier(model: nn.Module) -> bool:
    return isinstance(model, HFAudioClassifier)
