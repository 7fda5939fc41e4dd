"""Audio front ends as torch modules, so a model can take 16 kHz waveforms in one graph.

Each turns a waveform batch (B, samples) into what a network reads: the toolkit's log-mel
(`LogMelFrontEnd`, the same numbers as `data.features.log_mel`), Whisper's log-mel
(`WhisperFrontEnd`, as `WhisperFeatureExtractor`), the Kaldi-style filter bank of the Audio
Spectrogram Transformer (`KaldiFbankFrontEnd`, as `ASTFeatureExtractor` without torchaudio), or
the per-utterance normalisation of wav2vec 2.0 / HuBERT / WavLM (`WaveformNormaliser`).

Why not `torch.stft`: the short-time Fourier transform is written as one strided `conv1d` whose
kernels are the windowed cosine and sine bases (plus, for Kaldi, the per-frame DC removal and
pre-emphasis, which are linear too). It gives the same spectrum to float32 precision, and it
exports to ONNX and TorchScript, and runs in any runtime, without complex tensors. The kernels
and mel filters are derived constants: non-persistent buffers, never part of a state dict.

`FitLength` pads or crops to a fixed clip length with a constant-size pad and a slice, so the
exported graph does the same for any input length as the toolkit does before featurising.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.audio_utils import mel_filter_bank, window_function

from ..data.features import LOG_FLOOR, FeatureSpec, mel_filterbank

WHISPER_LOG_FLOOR = 1e-10  # WhisperFeatureExtractor clamps mel power here before log10
WHISPER_DYNAMIC_RANGE = 8.0  # log10 units kept below each utterance's peak (80 dB)
KALDI_MEL_FLOOR = 1.192092955078125e-07  # float32 epsilon, ASTFeatureExtractor's mel floor
KALDI_PREEMPHASIS = 0.97
KALDI_FRAME = 400  # 25 ms at 16 kHz
KALDI_HOP = 160  # 10 ms at 16 kHz
KALDI_FFT = 512


def dft_kernels(window: np.ndarray, n_fft: int, frame_operator: np.ndarray | None = None) -> torch.Tensor:
    """(2 * (n_fft // 2 + 1), 1, frame_length) conv1d kernels: real parts, then imaginary parts.

    Row k of the real half is cos(2 pi k m / n_fft) * window[m], applied after the optional
    linear `frame_operator` (frame_length, frame_length); the frame is zero-padded to n_fft.
    """
    frame_length = window.shape[0]
    bins = np.arange(n_fft // 2 + 1)[:, None]  # (K, 1)
    phase = 2 * np.pi * bins * np.arange(frame_length)[None, :] / n_fft  # (K, L)
    real, imaginary = np.cos(phase) * window, -np.sin(phase) * window  # (K, L) each
    if frame_operator is not None:
        real, imaginary = real @ frame_operator, imaginary @ frame_operator
    kernels = np.concatenate([real, imaginary])  # (2K, L)
    return torch.tensor(kernels[:, None, :], dtype=torch.float32)


class PowerSpectrogram(nn.Module):
    """|STFT|^2 of (B, samples) -> (B, n_fft // 2 + 1, frames), frames taken every `hop` samples."""

    def __init__(self, window: np.ndarray, n_fft: int, hop: int, frame_operator: np.ndarray | None = None):
        super().__init__()
        self.hop = hop
        self.register_buffer("kernels", dft_kernels(window, n_fft, frame_operator), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        parts = F.conv1d(waveforms.unsqueeze(1), self.kernels, stride=self.hop)  # (B, 2K, frames)
        real, imaginary = parts.chunk(2, dim=1)
        return real * real + imaginary * imaginary  # (B, K, frames)


class FitLength(nn.Module):
    """Zero-pad or crop (keeping the start) (B, samples) to exactly `samples` columns."""

    def __init__(self, samples: int):
        super().__init__()
        self.samples = samples

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        # A fixed pad then a slice: no shape arithmetic, so traced graphs work for any length.
        return F.pad(waveforms, (0, self.samples))[:, : self.samples]


class WaveformNormaliser(nn.Module):
    """Zero mean, unit variance per utterance, as wav2vec 2.0's feature extractor (do_normalize)."""

    def __init__(self, eps: float = 1e-7):
        super().__init__()
        self.eps = eps

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        mean = waveforms.mean(dim=1, keepdim=True)
        variance = (waveforms - mean).square().mean(dim=1, keepdim=True)
        return (waveforms - mean) / torch.sqrt(variance + self.eps)


class LogMelFrontEnd(nn.Module):
    """The toolkit's log-mel (`data.features.log_mel`) of (B, samples) -> (B, n_mels, frames).

    Centred frames with zero padding, a periodic Hann window of `win_samples` centred in `n_fft`,
    HTK mel filters, log(mel + 1e-6).
    """

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        self.half_window = spec.n_fft // 2
        window = np.zeros(spec.n_fft)
        left = (spec.n_fft - spec.win_samples) // 2  # where torch.stft places a shorter window
        window[left : left + spec.win_samples] = torch.hann_window(spec.win_samples, dtype=torch.float64).numpy()
        self.power = PowerSpectrogram(window, spec.n_fft, spec.hop_samples)
        filters = torch.from_numpy(mel_filterbank(spec)).T.contiguous()  # (n_mels, n_fft // 2 + 1)
        self.register_buffer("mel_filters", filters, persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        padded = F.pad(waveforms, (self.half_window, self.half_window))  # centred frames, zeros outside
        mel = torch.matmul(self.mel_filters, self.power(padded))  # (B, n_mels, frames)
        return torch.log(mel + LOG_FLOOR)


class WhisperFrontEnd(nn.Module):
    """WhisperFeatureExtractor in torch: (B, samples) -> (B, feature_size, n_samples // hop_length).

    The clip is zero-padded or cropped to `n_samples` (30 s for the published models) first, as
    the extractor does; `do_normalize` normalises the clip before that padding.
    """

    def __init__(self, feature_size: int, n_fft: int, hop_length: int, n_samples: int, sampling_rate: int,
                 do_normalize: bool = False):  # fmt: skip
        super().__init__()
        self.fit = FitLength(n_samples)
        self.normalise = WaveformNormaliser() if do_normalize else None
        self.half_window = n_fft // 2
        self.frames = n_samples // hop_length
        window = torch.hann_window(n_fft, dtype=torch.float64).numpy()
        self.power = PowerSpectrogram(window, n_fft, hop_length)
        filters = mel_filter_bank(
            num_frequency_bins=1 + n_fft // 2,
            num_mel_filters=feature_size,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("mel_filters", torch.tensor(filters.T, dtype=torch.float32), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        if self.normalise is not None:
            waveforms = self.normalise(waveforms)
        padded = F.pad(self.fit(waveforms).unsqueeze(1), (self.half_window, self.half_window), mode="reflect")
        power = self.power(padded.squeeze(1))[..., : self.frames]  # the extractor drops the last frame
        log_mel = torch.clamp(torch.matmul(self.mel_filters, power), min=WHISPER_LOG_FLOOR).log10()
        peak = log_mel.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        return (torch.maximum(log_mel, peak - WHISPER_DYNAMIC_RANGE) + 4.0) / 4.0


def kaldi_frame_operator(frame_length: int, preemphasis: float) -> np.ndarray:
    """The linear map of one frame: remove its mean (DC offset), then pre-emphasise.

    Pre-emphasis as Kaldi (and transformers' numpy `spectrogram`): y[0] = (1 - p) x[0],
    y[n] = x[n] - p x[n - 1].
    """
    remove_mean = np.eye(frame_length) - np.full((frame_length, frame_length), 1.0 / frame_length)
    emphasis = np.eye(frame_length) - preemphasis * np.eye(frame_length, k=-1)
    emphasis[0, 0] = 1.0 - preemphasis
    return emphasis @ remove_mean


class KaldiFbankFrontEnd(nn.Module):
    """ASTFeatureExtractor (its numpy path) in torch: (B, samples) -> (B, max_length, num_mel_bins).

    25 ms frames every 10 ms without centring, DC removal, pre-emphasis 0.97, a symmetric Hann
    window, a 512-point FFT, Kaldi mel filters from 20 Hz, natural log floored at float32
    epsilon; the frames are zero-padded or cropped to `max_length`, then normalised with the
    extractor's mean and std: (x - mean) / (2 std).
    """

    def __init__(self, num_mel_bins: int, max_length: int, sampling_rate: int, do_normalize: bool,
                 mean: float, std: float):  # fmt: skip
        super().__init__()
        self.max_length = max_length
        self.do_normalize, self.mean, self.std = do_normalize, float(mean), float(std)
        window = window_function(KALDI_FRAME, "hann", periodic=False)
        operator = kaldi_frame_operator(KALDI_FRAME, KALDI_PREEMPHASIS)
        self.power = PowerSpectrogram(window, KALDI_FFT, KALDI_HOP, operator)
        filters = mel_filter_bank(
            num_frequency_bins=KALDI_FFT // 2 + 1,
            num_mel_filters=num_mel_bins,
            min_frequency=20,
            max_frequency=sampling_rate // 2,
            sampling_rate=sampling_rate,
            norm=None,
            mel_scale="kaldi",
            triangularize_in_mel_space=True,
        )
        self.register_buffer("mel_filters", torch.tensor(filters.T, dtype=torch.float32), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(self.mel_filters, self.power(waveforms))  # (B, mels, frames)
        fbank = torch.log(torch.clamp(mel, min=KALDI_MEL_FLOOR)).transpose(1, 2)  # (B, frames, mels)
        # Padding rows are zeros in the log domain, as the extractor's ZeroPad2d makes them.
        fbank = F.pad(fbank, (0, 0, 0, self.max_length))[:, : self.max_length]  # (B, max_length, mels)
        if self.do_normalize:
            fbank = (fbank - self.mean) / (self.std * 2)
        return fbank
