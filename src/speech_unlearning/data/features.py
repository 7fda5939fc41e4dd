"""Model inputs, computed once per corpus and cached on disk as memory-mapped arrays.

`FeatureSpec` says what a model consumes: a log-mel spectrogram ("logmel", the small CPU models)
or the raw 16 kHz waveform ("waveform", the transformer backbones). `load_features` returns an
(N, ...) float32 array aligned with `corpus.utterances`, memory-mapped from a cache keyed by the
corpus fingerprint and the spec, so a warm load costs no decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import require


@dataclass(frozen=True)
class FeatureSpec:
    """What a model consumes; part of every checkpoint's metadata."""

    kind: Literal["logmel", "waveform"] = "logmel"
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    sample_rate: int = 16_000
    clip_seconds: float = 1.0

    def __post_init__(self) -> None:
        require(self.kind in ("logmel", "waveform"), "kind", f"{self.kind!r} is not 'logmel' or 'waveform'")
        require(self.n_mels > 0, "n_mels", "must be positive")
        require(0 < self.hop_ms <= self.win_ms, "hop_ms", "must be in (0, win_ms]")
        require(self.clip_seconds > 0, "clip_seconds", "must be positive")
        require(self.n_fft >= self.win_samples, "n_fft", f"must be >= the window ({self.win_samples} samples)")

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def win_samples(self) -> int:
        return int(round(self.win_ms * self.sample_rate / 1000))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_ms * self.sample_rate / 1000))

    @property
    def num_frames(self) -> int:
        return 1 + self.clip_samples // self.hop_samples

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example: (n_mels, frames) for logmel, (samples,) for waveform."""
        return (self.n_mels, self.num_frames) if self.kind == "logmel" else (self.clip_samples,)
