"""Training-time augmentation of log-mel batches: time shift, background noise, SpecAugment masks.

Keyword-spotting recipes (Speech Commands, res8 / BC-ResNet / MatchboxNet) augment every
training clip; `LogMelAugment` does the same on the cached log-mel features, so no audio is
decoded per step:

- **time shift**: each clip moves by up to `shift_ms` either way; frames shifted in are filled
  with the clip's quietest value (silence), not wrapped round.
- **background noise**: with probability `noise_prob`, a 1 s noise crop is mixed in at a signal-
  to-noise ratio drawn uniformly from [`noise_snr_db_low`, `noise_snr_db_high`]. The mix is done
  in the mel power domain, log(exp(x) + g exp(n)): the power of a sum of independent signals is
  the sum of their powers in expectation, so this is the waveform mix without decoding audio.
- **SpecAugment** (Park et al., 2019): `freq_masks` bands of up to `freq_mask_bins` mel bins and
  `time_masks` spans of up to `time_mask_frames` frames, set to the clip's mean value.

Everything is drawn from one `torch.Generator` seeded by the training seed, so augmented runs
stay bit-identical for the same seed. Only training batches are augmented; evaluation,
unlearning and the attacks always read the clean features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AugmentSettings:
    """What to apply; the fields mirror TrainConfig's augmentation fields."""

    shift_frames: int = 0
    noise_prob: float = 0.0
    noise_snr_db_low: float = 5.0
    noise_snr_db_high: float = 20.0
    freq_masks: int = 0
    freq_mask_bins: int = 7
    time_masks: int = 0
    time_mask_frames: int = 10

    @property
    def active(self) -> bool:
        return self.shift_frames > 0 or self.noise_prob > 0 or self.freq_masks > 0 or self.time_masks > 0


class LogMelAugment:
    """Augments (B, n_mels, T) log-mel batches in place of the clean ones (see module docstring).

    `noise_bank` is an (M, n_mels, T) array of log-mel noise crops, or None (no noise mixing).
    """

    def __init__(self, settings: AugmentSettings, seed: int, noise_bank: np.ndarray | None = None):
        if settings.noise_prob > 0 and (noise_bank is None or len(noise_bank) == 0):
            raise ValueError("noise_prob > 0 needs background-noise clips, and this corpus has none")
        self.settings = settings
        self.generator = torch.Generator().manual_seed(seed + 7919)  # apart from the shuffling stream
        self.noise_bank = None if noise_bank is None else torch.from_numpy(np.asarray(noise_bank, dtype=np.float32))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 3:
            raise ValueError(f"log-mel augmentation expects (batch, n_mels, frames), got {tuple(batch.shape)}")
        device = batch.device
        x = batch.detach().cpu().clone()  # draws on the CPU generator keep runs repeatable on any device
        if self.settings.shift_frames > 0:
            x = self._shift(x)
        if self.settings.noise_prob > 0:
            x = self._mix_noise(x)
        fill = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1): each clip's mean before any mask
        if self.settings.freq_masks > 0:
            x = self._mask(x, fill, axis=1, count=self.settings.freq_masks, width=self.settings.freq_mask_bins)
        if self.settings.time_masks > 0:
            x = self._mask(x, fill, axis=2, count=self.settings.time_masks, width=self.settings.time_mask_frames)
        return x.to(device)

    def _uniform(self, size: int) -> torch.Tensor:
        return torch.rand(size, generator=self.generator)

    def _integers(self, low: int, high: int, size: int) -> torch.Tensor:
        """Integers in [low, high] inclusive."""
        return torch.randint(low, high + 1, (size,), generator=self.generator)

    def _shift(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, frames = x.shape
        limit = min(self.settings.shift_frames, frames - 1)
        shifts = self._integers(-limit, limit, batch)
        silence = x.amin(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        source = torch.arange(frames).unsqueeze(0) - shifts.unsqueeze(1)  # (B, T): frame read for each output frame
        valid = (source >= 0) & (source < frames)  # (B, T)
        gathered = x.gather(2, source.clamp(0, frames - 1).unsqueeze(1).expand_as(x))
        return torch.where(valid.unsqueeze(1), gathered, silence.expand_as(x))

    def _mix_noise(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        chosen = self._uniform(batch) < self.settings.noise_prob
        if not chosen.any():
            return x
        rows = torch.nonzero(chosen).squeeze(1)
        noise = self.noise_bank[self._integers(0, len(self.noise_bank) - 1, len(rows))]  # (b, F, T)
        low, high = self.settings.noise_snr_db_low, self.settings.noise_snr_db_high
        snr_db = low + (high - low) * self._uniform(len(rows))
        signal_power = x[rows].exp().mean(dim=(1, 2))  # (b,)
        noise_power = noise.exp().mean(dim=(1, 2))
        log_gain = torch.log(signal_power / noise_power) - snr_db * (np.log(10.0) / 10.0)  # (b,)
        mixed = torch.logaddexp(x[rows], noise + log_gain.view(-1, 1, 1))
        x[rows] = mixed
        return x

    def _mask(self, x: torch.Tensor, fill: torch.Tensor, axis: int, count: int, width: int) -> torch.Tensor:
        batch, size = x.shape[0], x.shape[axis]
        positions = torch.arange(size)
        for _ in range(count):
            widths = self._integers(0, min(width, size), batch)  # (B,)
            starts = (self._uniform(batch) * (size - widths + 1)).long()  # (B,)
            inside = (positions.unsqueeze(0) >= starts.unsqueeze(1)) & (
                positions.unsqueeze(0) < (starts + widths).unsqueeze(1)
            )  # (B, size)
            mask = inside.unsqueeze(2) if axis == 1 else inside.unsqueeze(1)
            x = torch.where(mask, fill.expand_as(x), x)
        return x
