"""Model inputs, computed once per corpus and cached on disk as memory-mapped arrays.

`FeatureSpec` says what a model consumes: a log-mel spectrogram ("logmel", the small CPU models)
or the raw 16 kHz waveform ("waveform", the transformer backbones). `load_features` returns an
(N, ...) float32 array aligned with `corpus.utterances`, memory-mapped from a cache keyed by the
corpus fingerprint and the spec, so a warm load costs no decoding.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import torch
from tqdm import tqdm
from transformers.audio_utils import hertz_to_mel, mel_filter_bank, mel_to_hertz

from .. import __version__
from ..config import require
from ..io import TMP_PREFIX, atomic_directory, atomic_write_json, read_json, sha256_bytes, sha256_json
from .audio import fit_length, read_wav
from .corpus import Corpus, Utterance, default_cache_dir


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


# --- the log-mel front end --------------------------------------------------------------------

LOG_FLOOR = 1e-6  # added before the log so silent (zero-padded) frames stay finite
FRONTEND_VERSION = 1  # bump when the feature computation changes, so old caches are rebuilt
MEL_SCALE = "htk"  # HTK mel scale, no area normalisation: torchaudio's MelSpectrogram defaults


def feature_spec_for(corpus: Corpus, kind: str = "logmel") -> FeatureSpec:
    """The default FeatureSpec for `corpus`: its clip length and sample rate, default front end."""
    return FeatureSpec(
        kind=kind,  # type: ignore[arg-type]  (FeatureSpec validates it)
        clip_seconds=corpus.clip_seconds,
        sample_rate=corpus.sample_rate,
    )


@functools.lru_cache(maxsize=8)
def mel_filterbank(spec: FeatureSpec) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) float32 triangular HTK-mel filters from 0 Hz to Nyquist.

    Built by `transformers.audio_utils.mel_filter_bank` with `mel_scale="htk"` and no area
    normalisation (torchaudio's defaults, common in keyword-spotting recipes).
    """
    filters = mel_filter_bank(
        num_frequency_bins=spec.n_fft // 2 + 1,
        num_mel_filters=spec.n_mels,
        min_frequency=0.0,
        max_frequency=spec.sample_rate / 2,
        sampling_rate=spec.sample_rate,
        norm=None,
        mel_scale=MEL_SCALE,
    )
    return filters.astype(np.float32)


def log_mel(waveforms: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(B, clip_samples) float32 waveforms -> (B, n_mels, num_frames) float32 log-mel power.

    Centred frames (`torch.stft(center=True)`, zero padding of n_fft // 2 at both ends, so a
    clip of L samples gives 1 + L // hop frames), a periodic Hann window of `win_samples`
    centred in `n_fft`, the power spectrum, the mel filterbank, then log(mel + 1e-6).
    Zero padding rather than reflection: clips are already zero-padded to the clip length.
    """
    signal = torch.from_numpy(np.ascontiguousarray(waveforms, dtype=np.float32))
    spectrum = torch.stft(
        signal,
        n_fft=spec.n_fft,
        hop_length=spec.hop_samples,
        win_length=spec.win_samples,
        window=torch.hann_window(spec.win_samples),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # (B, n_fft // 2 + 1, frames)
    power = spectrum.real.square().addcmul_(spectrum.imag, spectrum.imag)  # |X|^2, one temporary
    del spectrum  # the largest tensor of the batch: free it before the projection
    filters = torch.from_numpy(mel_filterbank(spec)).T  # (n_mels, n_fft // 2 + 1)
    mel = torch.matmul(filters, power)  # (B, n_mels, frames)
    return torch.log(mel + LOG_FLOOR).numpy()


def read_clip(utterance: Utterance, spec: FeatureSpec) -> np.ndarray:
    """The utterance's audio, zero-padded or cropped (keeping the start) to the clip length."""
    audio = read_wav(utterance.path, spec.sample_rate, start=utterance.start, length=utterance.length)
    return fit_length(audio, spec.clip_samples)


def featurise(waveforms: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(B, clip_samples) clips -> (B, *spec.shape) model inputs."""
    return log_mel(waveforms, spec) if spec.kind == "logmel" else waveforms


def warp_vocal_tract(features: np.ndarray, factor: float, sample_rate: int = 16_000) -> np.ndarray:
    """Model inputs of the same recordings as if spoken through a vocal tract `factor` times shorter.

    A speaker's formants scale with the inverse of their vocal-tract length, so scaling the
    frequency axis by `factor` (> 1: higher formants) turns a voice into one no training
    recording has, while the words stay the same: vocal-tract-length perturbation (Jaitly and
    Hinton, 2013). Log-mel inputs (N, n_mels, frames) are resampled along the mel axis, with
    `mel_filterbank`'s 0 Hz to Nyquist HTK scale; each bin takes the value at its centre
    frequency divided by `factor`, clamped to the band. Waveforms (N, samples) are resampled in
    time by `factor`, which scales every frequency alike (speed perturbation) and shortens the
    clip, padded with zeros to its length.
    """
    require(factor > 0, "factor", f"must be positive, got {factor}")
    features = np.asarray(features, dtype=np.float32)
    if features.ndim == 2:
        return _resampled_in_time(features, factor)
    require(features.ndim == 3, "features", f"expected (N, n_mels, frames) or (N, samples), got {features.shape}")
    n_mels = features.shape[1]
    centres = np.linspace(0.0, hertz_to_mel(sample_rate / 2, MEL_SCALE), n_mels + 2)[1:-1]
    source = hertz_to_mel(np.clip(mel_to_hertz(centres, MEL_SCALE) / factor, 0.0, sample_rate / 2), MEL_SCALE)
    position = np.interp(source, centres, np.arange(n_mels))  # fractional bin each bin reads from
    return _read_between(features, position)


def _resampled_in_time(waveforms: np.ndarray, factor: float) -> np.ndarray:
    length = waveforms.shape[1]
    source_times = np.arange(length) * factor  # output sample t plays input sample t * factor
    inside = source_times <= length - 1
    warped = np.zeros_like(waveforms)
    warped[:, inside] = _read_between(waveforms, source_times[inside])
    return warped


def _read_between(array: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """`array` (N, L, ...) read along axis 1 at fractional `positions` in [0, L - 1], linearly."""
    below = np.floor(positions).astype(np.int64)
    above = np.minimum(below + 1, array.shape[1] - 1)
    weight = (positions - below).astype(np.float32).reshape(1, -1, *[1] * (array.ndim - 2))
    return array[:, below] * (1 - weight) + array[:, above] * weight


# --- the on-disk cache ------------------------------------------------------------------------

FEATURES_FILE = "features.npy"
META_FILE = "meta.json"
CHUNK_CLIPS = 128  # clips decoded and featurised together: bounds memory (~100 MiB), batches the STFT


def load_features(
    corpus: Corpus,
    spec: FeatureSpec,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Model inputs for every utterance of `corpus`: (N, *spec.shape) float32, read-only memmap.

    Row i belongs to `corpus.utterances[i]`. The array lives in
    `cache_dir/features/<corpus.name>-<key>/features.npy`, keyed by the corpus fingerprint and
    `spec`; a warm call only memory-maps it. A missing entry, or one whose meta.json does not
    match, is (re)built in a temporary folder and moved into place when complete. An unreadable
    audio file raises the AudioError of `read_wav` (which names it) and leaves no cache entry.
    """
    _check_compatible(corpus, spec)
    entry = cache_entry(corpus, spec, cache_dir)
    meta = expected_meta(corpus, spec)
    features = _open_cached(entry, meta)
    if features is not None:
        return features
    _remove_leftovers(entry)
    with atomic_directory(entry) as building:
        _write_features(corpus, spec, building / FEATURES_FILE, progress)
        atomic_write_json(building / META_FILE, {**meta, "package_version": __version__})
    features = _open_cached(entry, meta)
    if features is None:  # only if another process replaced the entry with a different one
        raise RuntimeError(f"feature cache {entry} changed while it was being written; run again")
    return features


def cache_entry(corpus: Corpus, spec: FeatureSpec, cache_dir: str | Path | None = None) -> Path:
    """The cache folder for (`corpus`, `spec`): <cache_dir>/features/<corpus name>-<key>."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = sha256_json({"fingerprint": corpus.fingerprint, "spec": asdict(spec), "frontend": FRONTEND_VERSION})
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", corpus.name)
    return root / "features" / f"{safe_name}-{key[:16]}"


def expected_meta(corpus: Corpus, spec: FeatureSpec) -> dict:
    """What meta.json of a valid cache entry for (`corpus`, `spec`) must contain."""
    utterance_ids = "\n".join(u.utt_id for u in corpus.utterances)
    return {
        "spec": asdict(spec),
        "frontend_version": FRONTEND_VERSION,
        "mel_scale": MEL_SCALE,
        "corpus_name": corpus.name,
        "corpus_fingerprint": corpus.fingerprint,
        "shape": [len(corpus), *spec.shape],
        "dtype": "float32",
        "utterance_ids_sha256": sha256_bytes(utterance_ids.encode("utf-8")),
    }


def _check_compatible(corpus: Corpus, spec: FeatureSpec) -> None:
    # Utterance segments (start, length) are counted at the corpus rate, so the spec must match it.
    require(
        spec.sample_rate == corpus.sample_rate,
        "sample_rate",
        f"{spec.sample_rate} Hz differs from corpus {corpus.name!r} ({corpus.sample_rate} Hz)",
    )


def _open_cached(entry: Path, meta: dict) -> np.ndarray | None:
    """Memory-map a complete entry whose meta matches `meta`; None when absent or stale."""
    try:
        stored = read_json(entry / META_FILE, "feature cache meta")
        if not isinstance(stored, dict) or any(stored.get(key) != value for key, value in meta.items()):
            return None
        features = np.load(entry / FEATURES_FILE, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):  # missing or corrupt files: rebuild
        return None
    if list(features.shape) != meta["shape"] or features.dtype != np.float32:
        return None
    return features


def _remove_leftovers(entry: Path) -> None:
    """Delete temporaries of earlier interrupted builds of this entry (and only this entry)."""
    parent = entry.parent
    if not parent.is_dir():
        return
    prefixes = (f"{TMP_PREFIX}{entry.name}-", f"{TMP_PREFIX}old-{entry.name}-")
    for leftover in parent.iterdir():
        if leftover.name.startswith(prefixes) and leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def _write_features(corpus: Corpus, spec: FeatureSpec, path: Path, progress: bool) -> None:
    """Decode and featurise every utterance, chunk by chunk, straight into an .npy memmap."""
    output = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(corpus), *spec.shape))
    try:
        with tqdm(total=len(corpus), desc=f"features {corpus.name}", unit="clip", disable=not progress) as bar:
            for first, clips in _decoded_chunks(corpus.utterances, spec):
                output[first : first + len(clips)] = featurise(clips, spec)
                bar.update(len(clips))
        output.flush()
    finally:
        del output  # close the mapping before the folder is moved or removed


def _decoded_chunks(utterances: Sequence[Utterance], spec: FeatureSpec) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first index, (B, clip_samples) clips) chunks, decoding the next chunk meanwhile.

    Decoding runs in a thread pool (soundfile and soxr release the GIL); only one chunk is in
    flight ahead of the consumer, so memory stays bounded whatever the corpus size.
    """
    workers = min(8, os.cpu_count() or 1)
    starts = range(0, len(utterances), CHUNK_CLIPS)
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(first: int) -> list[Future]:
            return [pool.submit(read_clip, u, spec) for u in utterances[first : first + CHUNK_CLIPS]]

        pending = submit(starts[0]) if starts else []
        try:
            for position, first in enumerate(starts):
                current = pending
                if position + 1 < len(starts):
                    pending = submit(starts[position + 1])
                yield first, np.stack([future.result() for future in current])  # (B, clip_samples)
        finally:
            for future in pending:  # after an error, do not decode the chunk nobody will read
                future.cancel()
