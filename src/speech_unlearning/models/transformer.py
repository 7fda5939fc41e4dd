"""Transformer speech backbones (Whisper encoder, wav2vec 2.0, HuBERT) behind one wrapper.

Every entry takes a 16 kHz waveform batch (B, samples), runs a `transformers` backbone, mean-pools
its last hidden states over time into the embedding (B, D) and applies our linear head. Our clips
all have the same length, so no attention mask is needed.

- wav2vec 2.0 / HuBERT: the waveform is normalised per utterance (zero mean, unit variance), as
  their feature extractors do. SpecAugment masking and LayerDrop are switched off, so training is
  deterministic given the seed and every trainable parameter gets a gradient at every step (the
  `masked_spec_embed` vector that masking would need is then not even created).
- Whisper: the 80-bin log-mel is computed inside the wrapper in torch, exactly like
  `WhisperFeatureExtractor` (n_fft 400, hop 160, Slaney mel filters, log10 floored at 8 below the
  maximum, then (x + 4) / 4), but WITHOUT padding the clip to 30 s: 1 s gives 100 mel frames
  and 50 encoder positions, so the encoder is built with `max_source_positions=50` and a
  pretrained encoder keeps only its first 50 positional embeddings.

Options: `source` (local folder or hub id), `pretrained` (load weights with `from_pretrained`,
or build from a hand-written config of the published size with random weights, no download),
`freeze_feature_encoder`, `freeze_backbone`, `pooling` and, for Whisper, `clip_seconds`.
`model.build_args` always records the complete backbone config (`backbone_config`) with
`pretrained=False`, so `rebuild_model` (and checkpoints) rebuild the architecture offline; where
the weights first came from is kept in `build_args["pretrained_from"]`.

`transformers` is imported lazily so that importing the package stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn

from ..config import ConfigError, require
from .base import SpeechClassifier
from .registry import ModelInfo, record_build_args, register_model, resolve_options

SAMPLE_RATE = 16_000
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_MEL_BINS = 80
# Whisper's encoder halves the frame rate once (conv2 has stride 2).
WHISPER_FRAMES_PER_POSITION = 2


# --- options ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneOptions:
    """Options shared by every transformer backbone."""

    source: str | None = field(
        default=None, metadata={"help": "local folder or hub id of pretrained weights (default: the entry's hub id)"}
    )
    pretrained: bool = field(
        default=True,
        metadata={"help": "load weights from `source` (default when there is one); false: random init, no download"},
    )
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "freeze the convolutional front end (wav2vec2 / HuBERT feature encoder)"}
    )
    freeze_backbone: bool = field(default=False, metadata={"help": "freeze the whole backbone: train the head only"})
    pooling: Literal["mean"] = field(default="mean", metadata={"help": "how hidden states become the embedding"})
    backbone_config: dict | None = field(
        default=None,
        metadata={"help": "a complete transformers config dict; builds that architecture with random weights"},
    )

    def __post_init__(self) -> None:
        require(self.pooling == "mean", "pooling", f"{self.pooling!r} is not supported; use 'mean'")
        require(
            not (self.pretrained and self.backbone_config is not None),
            "backbone_config",
            "builds a randomly initialised architecture; it cannot be combined with pretrained=true",
        )
        require(
            not (self.pretrained and not self.source),
            "source",
            "pretrained=true needs a source (local folder or hub id)",
        )


@dataclass(frozen=True)
class WhisperOptions(BackboneOptions):
    """Whisper options: the conv stem is trained by default, and the clip length sizes the encoder."""

    freeze_feature_encoder: bool = field(
        default=False, metadata={"help": "freeze Whisper's convolutional stem (conv1, conv2)"}
    )
    clip_seconds: float = field(
        default=1.0, metadata={"help": "clip length the model sees; sets the number of encoder positions"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.clip_seconds > 0, "clip_seconds", "must be positive")
        require(
            whisper_positions(self.clip_seconds) >= 1,
            "clip_seconds",
            f"{self.clip_seconds} s is too short for Whisper (needs >= {2 * WHISPER_HOP} samples)",
        )


def whisper_mel_frames(clip_samples: int) -> int:
    """Mel frames Whisper's extractor yields for `clip_samples`: the centred STFT minus its last frame."""
    return clip_samples // WHISPER_HOP


def whisper_positions(clip_seconds: float) -> int:
    """Encoder positions for a clip: half the mel frames (an odd last frame is dropped)."""
    return whisper_mel_frames(int(round(clip_seconds * SAMPLE_RATE))) // WHISPER_FRAMES_PER_POSITION


# --- published configurations ---------------------------------------------------------------

# Switch off SpecAugment masking and LayerDrop (see the module docstring).
NO_MASKING_NO_LAYERDROP = {"mask_time_prob": 0.0, "mask_feature_prob": 0.0, "layerdrop": 0.0}

LARGE_SSL = {  # wav2vec2-large-lv60 / hubert-large-ll60k layout: pre-norm, layer-normed conv stack
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "conv_bias": True,
}

TINY_SSL = {  # a few layers, hidden 32, a 4-layer conv stack of total stride 320 (as the real one)
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16, 16, 16, 16),
    "conv_stride": (5, 4, 4, 4),
    "conv_kernel": (10, 4, 4, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
}

WHISPER_SIZES = {
    "tiny": {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536},
    "base": {"d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048},
    "test": {"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 64},
}


# --- the backbone families -------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """How to build, load and run one kind of transformers backbone."""

    name: str  # "whisper" | "wav2vec2" | "hubert"
    config_class: Callable[[], type]  # lazily imported transformers classes
    model_class: Callable[[], type]
    normalise_waveform: bool


def _transformers_class(name: str, module: str = "transformers") -> Callable[[], type]:
    def get() -> type:
        import importlib

        return getattr(importlib.import_module(module), name)

    return get


FAMILIES = {
    "whisper": Family(
        "whisper",
        _transformers_class("WhisperConfig"),
        _transformers_class("WhisperEncoder", "transformers.models.whisper.modeling_whisper"),
        normalise_waveform=False,
    ),
    "wav2vec2": Family(
        "wav2vec2", _transformers_class("Wav2Vec2Config"), _transformers_class("Wav2Vec2Model"), normalise_waveform=True
    ),
    "hubert": Family(
        "hubert", _transformers_class("HubertConfig"), _transformers_class("HubertModel"), normalise_waveform=True
    ),
}


def whisper_config(size: str, clip_seconds: float) -> Any:
    """A WhisperConfig of a published encoder size, sized for `clip_seconds` clips."""
    return FAMILIES["whisper"].config_class()(
        num_mel_bins=WHISPER_MEL_BINS,
        max_source_positions=whisper_positions(clip_seconds),
        **WHISPER_SIZES[size],
    )


def ssl_config(family: str, sizes: dict) -> Any:
    """A wav2vec2 / HuBERT config: the library defaults (the base size) overridden by `sizes`."""
    return FAMILIES[family].config_class()(**{**sizes, **NO_MASKING_NO_LAYERDROP})


# --- building --------------------------------------------------------------------------------


def load_pretrained_backbone(family: Family, source: str, clip_seconds: float | None) -> nn.Module:
    """`from_pretrained(source)` for `family`, adapted to our clips; ValueError naming `source` on failure."""
    if looks_like_path(source):
        if not Path(source).expanduser().is_dir():
            raise ValueError(f"pretrained {family.name} source folder {source!r} does not exist")
        source = str(Path(source).expanduser())
    try:
        if family.name == "whisper":
            from transformers import WhisperModel

            # The checkpoint holds encoder and decoder; keep the encoder only.
            backbone = WhisperModel.from_pretrained(source).get_encoder()
            return truncate_whisper_positions(backbone, whisper_positions(clip_seconds))
        # Without masking the stored masked_spec_embed is reported as unused: expected.
        return family.model_class().from_pretrained(source, **NO_MASKING_NO_LAYERDROP)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"cannot load pretrained {family.name} weights from {source!r} ({error}); pass source=LOCAL_FOLDER "
            "holding a saved model, or pretrained=false for random initialisation"
        ) from None


def looks_like_path(source: str) -> bool:
    """True for a filesystem path (hub ids look like "owner/name", never start with / . or ~)."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1


def truncate_whisper_positions(encoder: nn.Module, positions: int) -> nn.Module:
    """Keep the first `positions` positional embeddings of a Whisper encoder (input = 2*positions frames)."""
    available = encoder.embed_positions.num_embeddings
    if positions > available:
        raise ValueError(f"the Whisper encoder has {available} positions, {positions} are needed for this clip length")
    table = nn.Embedding(positions, encoder.embed_positions.embedding_dim)
    table.weight.data.copy_(encoder.embed_positions.weight.data[:positions])
    table.requires_grad_(False)  # fixed sinusoids in Whisper, never trained
    encoder.embed_positions = table
    # The encoder checks its input length against the config.
    encoder.config.max_source_positions = positions
    encoder.max_source_positions = positions
    return encoder


def build_backbone(family: Family, config: Any) -> nn.Module:
    """A randomly initialised backbone of architecture `config` (no download)."""
    return family.model_class()(config)


def config_from_dict(family: Family, values: dict) -> Any:
    try:
        return family.config_class().from_dict(dict(values))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"backbone_config: not a valid {family.name} config ({error})") from None


class TransformerClassifier(SpeechClassifier):
    """A transformers backbone + mean pooling over time + our linear head, on 16 kHz waveforms."""

    input_kind = "waveform"

    def __init__(self, backbone: nn.Module, family: Family, num_classes: int):
        super().__init__(backbone.config.hidden_size, num_classes)
        self.backbone = backbone
        self.family = family.name
        self.normalise_waveform = family.normalise_waveform
        if family.name == "whisper":
            self.whisper_frontend = WhisperLogMel(2 * backbone.config.max_source_positions)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() != 2:
            raise ValueError(f"{self.family} models expect waveforms (batch, samples), got {tuple(inputs.shape)}")
        if self.family == "whisper":
            log_mel = self.whisper_frontend(inputs).to(self.backbone.conv1.weight.dtype)  # (B, 80, 2P)
            hidden = self.backbone(input_features=log_mel).last_hidden_state  # (B, P, D)
        else:
            if self.normalise_waveform:
                inputs = normalise_per_utterance(inputs)
            hidden = self.backbone(input_values=inputs).last_hidden_state  # (B, T', D)
        return hidden.mean(dim=1)  # (B, D)

    def feature_encoder_parameters(self) -> list[nn.Parameter]:
        """The convolutional front end: wav2vec2 / HuBERT feature encoder, Whisper conv1 + conv2."""
        if self.family == "whisper":
            return [*self.backbone.conv1.parameters(), *self.backbone.conv2.parameters()]
        return list(self.backbone.feature_extractor.parameters())

    def freeze(self, feature_encoder: bool, backbone: bool) -> None:
        """Turn off requires_grad for the front end and / or the whole backbone (the head stays trainable)."""
        if feature_encoder or backbone:
            if self.family == "whisper":
                for parameter in self.feature_encoder_parameters():
                    parameter.requires_grad_(False)
            else:
                # transformers' own switch (what Wav2Vec2Model.freeze_feature_encoder calls; HubertModel
                # lacks that method) also skips the front end's autograd bookkeeping.
                self.backbone.feature_extractor._freeze_parameters()
        if backbone:
            self.backbone.requires_grad_(False)


def normalise_per_utterance(waveforms: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Zero mean, unit variance per row of (B, samples), like the wav2vec2 feature extractor."""
    mean = waveforms.mean(dim=1, keepdim=True)
    variance = waveforms.var(dim=1, keepdim=True, unbiased=False)
    return (waveforms - mean) / torch.sqrt(variance + eps)


class WhisperLogMel(nn.Module):
    """Whisper's 80-bin log-mel of (B, samples) -> (B, 80, frames), in torch, without 30 s padding."""

    def __init__(self, frames: int):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        self.frames = frames
        filters = mel_filter_bank(
            num_frequency_bins=1 + WHISPER_N_FFT // 2,
            num_mel_filters=WHISPER_MEL_BINS,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        # Derived constants, not weights: kept out of the state dict (non-persistent).
        self.register_buffer("mel_filters", torch.tensor(filters, dtype=torch.float32).T, persistent=False)  # (80, 201)
        self.register_buffer("window", torch.hann_window(WHISPER_N_FFT), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        positions = whisper_mel_frames(waveforms.shape[1]) // WHISPER_FRAMES_PER_POSITION
        if positions * WHISPER_FRAMES_PER_POSITION != self.frames:
            expected = self.frames * WHISPER_HOP
            raise ValueError(
                f"this Whisper model was built for clips of {expected} samples ({expected / SAMPLE_RATE:g} s), "
                f"got {waveforms.shape[1]} samples; set the model option clip_seconds to match the data"
            )
        # Always float32, even inside a half-precision model: the log of tiny powers needs the range.
        stft = torch.stft(
            waveforms.float(), WHISPER_N_FFT, WHISPER_HOP, window=self.window.float(), return_complex=True
        )  # (B, 201, frames + 1)
        power = stft[..., : self.frames].abs() ** 2  # drop the last frame, as Whisper does
        log_mel = torch.clamp(self.mel_filters.float() @ power, min=1e-10).log10()  # (B, 80, frames)
        floor = log_mel.amax(dim=(1, 2), keepdim=True) - 8.0  # 80 dB below each utterance's peak
        return (torch.maximum(log_mel, floor) + 4.0) / 4.0


# --- registry entries ------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneSpec:
    """A registered size: which family, which published (or tiny) config, which default weights."""

    name: str
    family: str
    default_source: str | None
    real_size: bool
    parameters: str
    description: str
    make_config: Callable[[Any], Any]  # options -> transformers config (random-init path)


def create_transformer(spec: BackboneSpec, num_classes: int, options: dict) -> TransformerClassifier:
    """Build `spec` with `options` (validated), freeze as asked, and record its build_args."""
    family = FAMILIES[spec.family]
    options_class = WhisperOptions if spec.family == "whisper" else BackboneOptions
    # Pretrained weights by default whenever there is a source to load them from; an explicit
    # backbone_config means "this architecture, random weights".
    source = options.get("source", spec.default_source)
    defaults = {"source": source, "pretrained": bool(source) and options.get("backbone_config") is None}
    resolved = resolve_options(options_class, {**defaults, **options}, spec.name)
    clip_seconds = getattr(resolved, "clip_seconds", None)
    if resolved.pretrained:
        backbone = load_pretrained_backbone(family, resolved.source, clip_seconds)
    else:
        config = (
            config_from_dict(family, resolved.backbone_config)
            if resolved.backbone_config is not None
            else spec.make_config(resolved)
        )
        if spec.family == "whisper":
            config.max_source_positions = whisper_positions(clip_seconds)
        backbone = build_backbone(family, config)
    model = TransformerClassifier(backbone, family, num_classes)
    model.freeze(resolved.freeze_feature_encoder, resolved.freeze_backbone)
    # Record what rebuilds this architecture offline: the full config, random init.
    recorded = replace(resolved, pretrained=False, backbone_config=backbone.config.to_dict())
    record_build_args(model, spec.name, num_classes, recorded)
    model.build_args["pretrained_from"] = resolved.source if resolved.pretrained else None
    return model


def register_backbone(spec: BackboneSpec) -> None:
    """Register a factory for `spec` under `spec.name`."""

    def factory(num_classes: int, **options: Any) -> TransformerClassifier:
        return create_transformer(spec, num_classes, options)

    factory.__name__ = spec.name.replace("-", "_")
    factory.__doc__ = spec.description
    info = ModelInfo(
        name=spec.name,
        input_kind="waveform",
        family=spec.family,
        real_size=spec.real_size,
        parameters=spec.parameters,
        description=spec.description,
        options_class=WhisperOptions if spec.family == "whisper" else BackboneOptions,
        default_source=spec.default_source,
    )
    register_model(info)(factory)


BACKBONES = (
    BackboneSpec(
        "whisper-tiny", "whisper", "openai/whisper-tiny", True, "8 M (encoder)",
        "Whisper tiny encoder on its own 80-bin log-mel",
        lambda options: whisper_config("tiny", options.clip_seconds),
    ),
    BackboneSpec(
        "whisper-base", "whisper", "openai/whisper-base", True, "20 M (encoder)",
        "Whisper base encoder on its own 80-bin log-mel",
        lambda options: whisper_config("base", options.clip_seconds),
    ),
    BackboneSpec(
        "wav2vec2-base", "wav2vec2", "facebook/wav2vec2-base", True, "95 M",
        "wav2vec 2.0 base (LibriSpeech 960 h pretraining)",
        lambda options: ssl_config("wav2vec2", {}),
    ),
    BackboneSpec(
        "wav2vec2-large", "wav2vec2", "facebook/wav2vec2-large-lv60", True, "315 M",
        "wav2vec 2.0 large (LibriLight 60k h pretraining)",
        lambda options: ssl_config("wav2vec2", LARGE_SSL),
    ),
    BackboneSpec(
        "hubert-base", "hubert", "facebook/hubert-base-ls960", True, "95 M",
        "HuBERT base (LibriSpeech 960 h pretraining)",
        lambda options: ssl_config("hubert", {}),
    ),
    BackboneSpec(
        "hubert-large", "hubert", "facebook/hubert-large-ll60k", True, "316 M",
        "HuBERT large (LibriLight 60k h pretraining)",
        lambda options: ssl_config("hubert", LARGE_SSL),
    ),
    BackboneSpec(
        "hubert-xlarge", "hubert", "facebook/hubert-xlarge-ll60k", True, "964 M",
        "HuBERT X-large (LibriLight 60k h pretraining)",
        lambda options: ssl_config(
            "hubert",
            {**LARGE_SSL, "hidden_size": 1280, "num_hidden_layers": 48, "intermediate_size": 5120},
        ),
    ),
    BackboneSpec(
        "tiny-whisper", "whisper", None, False, "0.05 M",
        "tiny random Whisper encoder for tests (2 layers, width 32)",
        lambda options: whisper_config("test", options.clip_seconds),
    ),
    BackboneSpec(
        "tiny-wav2vec2", "wav2vec2", None, False, "0.05 M",
        "tiny random wav2vec 2.0 for tests (2 layers, width 32)",
        lambda options: ssl_config("wav2vec2", TINY_SSL),
    ),
    BackboneSpec(
        "tiny-hubert", "hubert", None, False, "0.05 M",
        "tiny random HuBERT for tests (2 layers, width 32)",
        lambda options: ssl_config("hubert", TINY_SSL),
    ),
)

for _spec in BACKBONES:
    register_backbone(_spec)
