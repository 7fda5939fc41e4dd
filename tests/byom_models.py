"""Tiny deployed models for tests/test_byom.py: transformers audio classifiers written with
save_pretrained, and a plain PyTorch keyword spotter (also a `module:factory` the import calls).

Everything is built from configs with random weights: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from torch import nn

TINY_SSL = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    conv_dim=(16, 16, 16, 16), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 4, 4, 4),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, classifier_proj_size=16,
)  # fmt: skip
TINY_WHISPER = dict(
    d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
    decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=50, classifier_proj_size=16,
)  # fmt: skip
TINY_AST = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_length=100,
                num_mel_bins=32)  # fmt: skip
LOGIT_SCALE = 50.0  # random heads give logits near 1e-3; scaled up, tolerances mean something


def tiny_classifier(architecture: str, model_labels: list[str], **extra) -> tuple[nn.Module, object]:
    """(random tiny `architecture`, its feature extractor); id2label lists `model_labels` in output order."""
    labels = {"num_labels": len(model_labels), "id2label": dict(enumerate(model_labels)),
              "label2id": {name: i for i, name in enumerate(model_labels)}}  # fmt: skip
    if architecture == "WhisperForAudioClassification":
        config = transformers.WhisperConfig(**TINY_WHISPER, **labels, **extra)
        extractor = transformers.WhisperFeatureExtractor(chunk_length=1)  # 1 s clips, 50 encoder positions
    elif architecture == "ASTForAudioClassification":
        config = transformers.ASTConfig(**TINY_AST, **labels, **extra)
        extractor = transformers.ASTFeatureExtractor(max_length=100, num_mel_bins=32)
    else:
        config_class = getattr(transformers, architecture.replace("ForSequenceClassification", "Config"))
        extra = {"num_buckets": 16, "max_bucket_distance": 50, **extra} if architecture.startswith("WavLM") else extra
        config = config_class(**TINY_SSL, **labels, **extra)
        extractor = transformers.Wav2Vec2FeatureExtractor()
    network = getattr(transformers, architecture)(config).eval()
    head = network.classifier.dense if architecture.startswith("AST") else network.classifier
    with torch.no_grad():
        head.weight.mul_(LOGIT_SCALE)
    return network, extractor


def save_classifier(folder: Path, architecture: str, model_labels: list[str], seed: int = 0, **extra) -> nn.Module:
    """Save a tiny random classifier and its feature extractor in `folder`; returns the network."""
    torch.manual_seed(seed)
    network, extractor = tiny_classifier(architecture, model_labels, **extra)
    network.save_pretrained(folder)
    extractor.save_pretrained(folder)
    return network


def save_pretrained_base(folder: Path, seed: int = 1) -> nn.Module:
    """A tiny "pretrained" wav2vec 2.0 base model (no head), the starting point of a fine-tune."""
    torch.manual_seed(seed)
    base = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**TINY_SSL))
    base.save_pretrained(folder)
    return base


class LogMelKeywordSpotter(nn.Module):
    """A deployed keyword spotter on the toolkit's log-mel (B, 40, frames): conv, batch norm, pooling, head."""

    def __init__(self, classes: int = 3, channels: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(40, channels, 3, padding=1), nn.BatchNorm1d(channels), nn.ReLU())
        self.fc = nn.Linear(channels, classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(features))

    @torch.jit.export
    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features).mean(dim=2)  # (B, channels)


def build_logmel_classifier(classes: int = 3, channels: int = 8) -> nn.Module:
    """The factory `import --torch-factory byom_models:build_logmel_classifier` calls."""
    return LogMelKeywordSpotter(classes, channels)


class WaveformKeywordSpotter(nn.Module):
    """A deployed spotter on 16 kHz waveforms, without an `embed` method (the import hooks its head)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.frames = nn.Conv1d(1, 8, 400, stride=160)
        self.head = nn.Linear(8, classes)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.frames(waveforms.unsqueeze(1))).mean(dim=2))


def build_waveform_classifier(classes: int = 3) -> nn.Module:
    return WaveformKeywordSpotter(classes)
