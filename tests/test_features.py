"""The feature cache: values against an independent log-mel, cache hits, rebuilds, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from speech_unlearning.config import ConfigError
from speech_unlearning.data import features as features_module
from speech_unlearning.data.audio import AudioError
from speech_unlearning.data.corpus import Corpus, Utterance
from speech_unlearning.data.features import (
    FeatureSpec,
    cache_entry,
    feature_spec_for,
    featurise,
    load_features,
    warp_vocal_tract,
)

RATE = 16_000
CLIP_SECONDS = 0.5  # short clips keep the tests fast; the front end does not depend on it


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio, rate, subtype="FLOAT")  # float samples read back bit-exact
    return str(path)


def tiny_audio(count: int, seed: int = 0) -> list[np.ndarray]:
    """Clips shorter, equal to and longer than the clip length: padding and cropping are both used."""
    rng = np.random.default_rng(seed)
    lengths = [int(RATE * s) for s in (0.2, CLIP_SECONDS, 0.8)]
    return [(0.3 * rng.standard_normal(lengths[i % 3])).astype(np.float32) for i in range(count)]


def tiny_corpus(root: Path, audio: list[np.ndarray], fingerprint: str = "fp-1") -> Corpus:
    utterances = tuple(
        Utterance(
            utt_id=f"u{i}",
            path=write_wav(root / f"u{i}.wav", clip),
            label=i % 2,
            speaker=f"s{i % 3}",
            split="train",
        )
        for i, clip in enumerate(audio)
    )
    return Corpus("tiny-kws", "kws", root, ("a", "b"), utterances, CLIP_SECONDS, fingerprint)


def padded(clip: np.ndarray, samples: int) -> np.ndarray:
    out = np.zeros(samples, dtype=np.float32)
    out[: min(samples, clip.size)] = clip[:samples]
    return out


def htk_filterbank(n_fft: int, n_mels: int, rate: int) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangles on the HTK mel scale, written from the formula."""
    to_mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    to_hz = lambda mel: 700.0 * (10.0 ** (mel / 2595.0) - 1.0)  # noqa: E731
    corners = to_hz(np.linspace(to_mel(0.0), to_mel(rate / 2), n_mels + 2))
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    rising = (bins[:, None] - corners[None, :-2]) / (corners[1:-1] - corners[:-2])
    falling = (corners[None, 2:] - bins[:, None]) / (corners[2:] - corners[1:-1])
    return np.maximum(0.0, np.minimum(rising, falling))


def reference_log_mel(clip: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """numpy rfft over centred, zero-padded frames with a periodic Hann window; float64."""
    signal = np.pad(padded(clip, spec.clip_samples).astype(np.float64), spec.n_fft // 2)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(spec.win_samples) / spec.win_samples)
    offset = (spec.n_fft - spec.win_samples) // 2
    window = np.zeros(spec.n_fft)
    window[offset : offset + spec.win_samples] = hann
    starts = np.arange(spec.num_frames) * spec.hop_samples
    frames = np.stack([signal[s : s + spec.n_fft] for s in starts]) * window  # (T, n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (T, n_fft // 2 + 1)
    mel = power @ htk_filterbank(spec.n_fft, spec.n_mels, spec.sample_rate)  # (T, n_mels)
    return np.log(mel + 1e-6).T  # (n_mels, T)


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    return tiny_corpus(tmp_path / "audio", tiny_audio(5))


@pytest.mark.parametrize("kind", ["logmel", "waveform"])
def test_shape_dtype_and_read_only_memmap(corpus, tmp_path, kind):
    spec = feature_spec_for(corpus, kind)
    assert spec.clip_seconds == CLIP_SECONDS
    features = load_features(corpus, spec, cache_dir=tmp_path / "cache", progress=False)
    assert isinstance(features, np.memmap)
    assert features.shape == (len(corpus), *spec.shape)
    assert features.dtype == np.float32
    assert not features.flags.writeable
    assert np.isfinite(features).all()
    expected_shape = (40, 51) if kind == "logmel" else (8000,)
    assert spec.shape == expected_shape


def test_waveform_rows_are_clips_padded_or_cropped(tmp_path):
    audio = tiny_audio(3)
    corpus = tiny_corpus(tmp_path / "audio", audio)
    spec = feature_spec_for(corpus, "waveform")
    features = load_features(corpus, spec, cache_dir=tmp_path / "cache", progress=False)
    for row, clip in zip(features, audio):
        np.testing.assert_array_equal(row, padded(clip, spec.clip_samples))


def test_segment_utterances_read_only_their_samples(tmp_path):
    long_clip = np.arange(RATE, dtype=np.float32) / RATE
    path = write_wav(tmp_path / "noise.wav", long_clip)
    segments = tuple(
        Utterance(f"seg{k}", path, 0, "noise", "train", start=k * 3000, length=3000) for k in range(2)
    )
    corpus = Corpus("segments", "kws", tmp_path, ("silence",), segments, 0.25, "fp-seg")
    features = load_features(corpus, feature_spec_for(corpus, "waveform"), cache_dir=tmp_path / "c", progress=False)
    for k, row in enumerate(features):  # 3000 samples of the segment, then zero padding to 4000
        np.testing.assert_array_equal(row, padded(long_clip[k * 3000 : (k + 1) * 3000], 4000))


def test_log_mel_matches_independent_numpy_computation(tmp_path):
    rng = np.random.default_rng(3)
    t = np.arange(int(0.4 * RATE)) / RATE  # shorter than the clip: the padded frames are covered too
    clip = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)
    corpus = tiny_corpus(tmp_path / "audio", [clip])
    spec = feature_spec_for(corpus)
    features = load_features(corpus, spec, cache_dir=tmp_path / "cache", progress=False)
    expected = reference_log_mel(clip, spec)
    assert features[0].shape == expected.shape
    np.testing.assert_allclose(features[0], expected, atol=2e-3, rtol=1e-4)
    # The silent tail (pure zero padding) sits exactly at the log floor.
    assert np.allclose(features[0][:, -5:], np.log(1e-6))


def test_warm_load_maps_the_cache_without_decoding(corpus, tmp_path, monkeypatch):
    spec = feature_spec_for(corpus)
    cold = np.array(load_features(corpus, spec, cache_dir=tmp_path / "cache", progress=False))

    def no_decoding(*args, **kwargs):
        raise AssertionError("a warm load must not decode audio")

    monkeypatch.setattr(features_module, "read_wav", no_decoding)
    warm = load_features(corpus, spec, cache_dir=tmp_path / "cache", progress=False)
    assert isinstance(warm, np.memmap)
    np.testing.assert_array_equal(warm, cold)


def test_changed_spec_or_corpus_version_gets_its_own_cache(corpus, tmp_path):
    cache = tmp_path / "cache"
    spec = feature_spec_for(corpus)
    other_spec = FeatureSpec(n_mels=24, clip_seconds=CLIP_SECONDS)
    other_version = tiny_corpus(tmp_path / "audio", tiny_audio(5), fingerprint="fp-2")
    entries = {
        cache_entry(corpus, spec, cache),
        cache_entry(corpus, other_spec, cache),
        cache_entry(other_version, spec, cache),
    }
    assert len(entries) == 3
    assert load_features(corpus, other_spec, cache_dir=cache, progress=False).shape == (5, 24, 51)
    load_features(corpus, spec, cache_dir=cache, progress=False)
    load_features(other_version, spec, cache_dir=cache, progress=False)
    assert {p for p in (cache / "features").iterdir()} == entries


@pytest.mark.parametrize("damage", ["meta", "array"])
def test_damaged_or_stale_cache_is_rebuilt(corpus, tmp_path, damage):
    cache = tmp_path / "cache"
    spec = feature_spec_for(corpus)
    expected = np.array(load_features(corpus, spec, cache_dir=cache, progress=False))
    entry = cache_entry(corpus, spec, cache)
    if damage == "meta":
        (entry / "meta.json").write_text((entry / "meta.json").read_text().replace("fp-1", "fp-0"))
    else:
        (entry / "features.npy").write_bytes((entry / "features.npy").read_bytes()[:1000])
    rebuilt = load_features(corpus, spec, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(rebuilt, expected)
    assert "fp-1" in (entry / "meta.json").read_text()


def test_bad_wav_names_the_file_and_leaves_no_cache(tmp_path, monkeypatch):
    """The corrupt file comes after a full chunk, so the build fails mid-way through writing."""
    monkeypatch.setattr(features_module, "CHUNK_CLIPS", 2)
    corpus = tiny_corpus(tmp_path / "audio", tiny_audio(6))
    broken = Path(corpus.utterances[4].path)
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    cache = tmp_path / "cache"
    with pytest.raises(AudioError, match=broken.name):
        load_features(corpus, feature_spec_for(corpus), cache_dir=cache, progress=False)
    assert list((cache / "features").iterdir()) == []


def test_leftovers_of_an_interrupted_build_are_removed(corpus, tmp_path):
    cache = tmp_path / "cache"
    spec = feature_spec_for(corpus)
    entry = cache_entry(corpus, spec, cache)
    leftover = entry.parent / f".tmp-{entry.name}-abc123"
    leftover.mkdir(parents=True)
    (leftover / "features.npy").write_bytes(b"half written")
    load_features(corpus, spec, cache_dir=cache, progress=False)
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name]
    assert sorted(p.name for p in entry.iterdir()) == ["features.npy", "meta.json"]


def test_spec_sample_rate_must_match_the_corpus(corpus, tmp_path):
    with pytest.raises(ConfigError, match="sample_rate"):
        load_features(corpus, FeatureSpec(sample_rate=8000, n_fft=256, clip_seconds=CLIP_SECONDS), cache_dir=tmp_path)


def test_fsdd_log_mel_features(fsdd_kws, cache_dir):
    spec = feature_spec_for(fsdd_kws)
    features = load_features(fsdd_kws, spec, cache_dir=cache_dir, progress=False)
    assert features.shape == (3000, 40, 101)
    assert not features.flags.writeable
    assert np.isfinite(features[::50]).all()
    # The recordings differ, so rows must differ too (guards against a broadcast or reuse bug).
    assert not np.allclose(features[0], features[1])


# --- vocal-tract warping (calibrated's unseen-voice reference) --------------------------------

def tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(int(RATE * seconds)) / RATE).astype(np.float32)[None]


def test_warping_a_log_mel_moves_a_tone_to_the_warped_frequency():
    """A 1 kHz tone warped by 1.25 peaks in the bin where a 1.25 kHz tone peaks; 0.8 undoes it."""
    spec = FeatureSpec()

    def peak(feats: np.ndarray) -> int:  # the loudest mel bin
        return int(feats[0].mean(axis=1).argmax())

    low, high = featurise(tone(1000), spec), featurise(tone(1250), spec)
    assert peak(low) != peak(high)
    assert peak(warp_vocal_tract(low, 1.25)) == peak(high)
    assert peak(warp_vocal_tract(high, 0.8)) == peak(low)
    np.testing.assert_allclose(warp_vocal_tract(low, 1.0), low, atol=1e-5)


def test_warping_a_waveform_scales_its_frequencies_and_keeps_its_length():
    warped = warp_vocal_tract(tone(500), 1.2)
    assert warped.shape == (1, RATE)
    spectrum = np.abs(np.fft.rfft(warped[0]))
    assert np.fft.rfftfreq(RATE, 1 / RATE)[spectrum.argmax()] == pytest.approx(600, abs=2)
    assert not warped[0, int(RATE / 1.2) + 1:].any()  # the sped-up clip ends early, padded with silence


@pytest.mark.parametrize("factor", [0.0, -1.0])
def test_a_bad_warp_factor_is_named(factor):
    with pytest.raises(ConfigError, match="factor"):
        warp_vocal_tract(np.zeros((1, 40, 10), np.float32), factor)


def test_warping_inputs_of_an_unknown_shape_is_refused_by_name():
    with pytest.raises(ConfigError, match="features.*got \\(1, 2, 40, 10\\)"):
        warp_vocal_tract(np.zeros((1, 2, 40, 10), np.float32), 1.1)

