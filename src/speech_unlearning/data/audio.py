"""Reading audio: every loader returns 16 kHz float32 mono through `read_wav`.

Documented conversions (not errors): stereo and multi-channel audio is averaged to mono; any
other sample rate is resampled to 16 kHz with soxr (high quality). Errors (`AudioError`, which
names the file): a missing file, an empty file, a truncated or non-audio file, a file with zero
samples, a (floating-point) file holding NaN or infinite samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

SAMPLE_RATE = 16_000


class AudioError(ValueError):
    """An audio file cannot be read; the message names the file and the reason."""


def read_wav(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    start: int = 0,
    length: int | None = None,
) -> np.ndarray:
    """Read `path` as float32 mono at `sample_rate`.

    `start` and `length` select a segment, counted in samples at `sample_rate` (used for the
    `_silence_` crops of long noise files). Raises AudioError naming the file on any failure.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        with soundfile.SoundFile(path) as handle:
            native_rate = handle.samplerate
            first = int(start * native_rate / sample_rate)
            count = -1 if length is None else int(np.ceil(length * native_rate / sample_rate))
            handle.seek(first)
            audio = handle.read(frames=count, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as error:
        raise AudioError(f"{path}: not a readable audio file ({error})") from None
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples (empty or truncated audio)")
    if not np.isfinite(audio).all():
        # Float WAVs can store NaN / inf; they would silently turn every feature and loss into NaN.
        raise AudioError(f"{path}: contains NaN or infinite samples (corrupt floating-point audio)")
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]  # (samples,)
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate, quality="HQ").astype(np.float32)
    if length is not None:
        mono = mono[:length]
    return np.ascontiguousarray(mono, dtype=np.float32)


def fit_length(waveform: np.ndarray, num_samples: int) -> np.ndarray:
    """Zero-pad or crop (keeping the start) to exactly `num_samples`."""
    if waveform.shape[0] >= num_samples:
        return waveform[:num_samples]
    return np.pad(waveform, (0, num_samples - waveform.shape[0]))
