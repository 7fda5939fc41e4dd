"""Synthetic speech from espeak-ng, called through ctypes.

The `espeakng-loader` wheel ships `libespeak-ng.so` and its data folder; espeak-ng (GPL-3.0) is
only loaded at run time, none of its files are part of this package.

Known behaviour of the library, which shapes this module:
- it is not thread-safe (concurrent calls crash the process), so every call holds one lock;
- rate, pitch and range persist across voice changes, so `synthesize` sets all of them each time;
- the output of a call depends on the calls made before it in the same process (internal
  synthesiser state), while the same sequence of calls in a fresh process repeats exactly once
  the breath-noise generator is seeded (`synthesize(seed=...)`; unseeded, breathy variants such
  as f2 differ between processes); reproducible corpora are therefore made by fresh worker
  processes, each running a fixed list of requests in a fixed order.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import require
from .corpus import CorpusError

# espeak_AUDIO_OUTPUT: synchronous mode hands samples to the callback before espeak_Synth returns.
AUDIO_OUTPUT_SYNCHRONOUS = 2
BUFFER_MS = 500
POS_CHARACTER = 1
CHARS_UTF8 = 1
# espeak_PARAMETER ids
PARAM_RATE = 1
PARAM_VOLUME = 2
PARAM_PITCH = 3
PARAM_RANGE = 4

# int callback(short *wav, int numsamples, espeak_EVENT *events); returning 0 continues.
_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class SynthError(CorpusError):
    """espeak-ng is missing, failed to start, or rejected a request; the message says which.

    A CorpusError, because it stops the embedded corpus from being built.
    """


@dataclass(frozen=True)
class Voice:
    """How one synthetic speaker sounds: an accent, a voice variant and prosody settings.

    `accent` is an espeak-ng language file name ("en", "en-us", "en-gb-scotland", ...),
    `variant` a file under espeak-ng-data/voices/!v ("m3", "f2", "klatt", ...).
    """

    accent: str = "en"
    variant: str = "m3"
    rate: int = 175  # words per minute (espeak-ng accepts 80..450)
    pitch: int = 50  # base pitch, 0..100
    pitch_range: int = 50  # pitch variation, 0..100

    def __post_init__(self) -> None:
        require(80 <= self.rate <= 450, "rate", f"must be in [80, 450] words per minute, got {self.rate}")
        require(0 <= self.pitch <= 100, "pitch", f"must be in [0, 100], got {self.pitch}")
        require(0 <= self.pitch_range <= 100, "pitch_range", f"must be in [0, 100], got {self.pitch_range}")

    @property
    def name(self) -> str:
        """The name espeak_SetVoiceByName expects, e.g. "en-us+m3"."""
        return f"{self.accent}+{self.variant}"


def espeak_paths() -> tuple[Path, Path]:
    """(shared library, data folder) from the espeakng-loader wheel; SynthError if not installed."""
    try:
        import espeakng_loader
    except ImportError:
        raise SynthError(
            "espeak-ng is needed to build the embedded corpus: pip install espeakng-loader"
        ) from None
    return Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())


def available_variants() -> list[str]:
    """Voice variant names shipped in the data folder (m1..m8, f1..f5, klatt, ...)."""
    _, data_dir = espeak_paths()
    return sorted(p.name for p in (data_dir / "voices" / "!v").iterdir() if p.is_file())


def available_english_accents() -> list[str]:
    """English accent file names, lower-cased as espeak_SetVoiceByName accepts them."""
    _, data_dir = espeak_paths()
    return sorted(p.name.lower() for p in (data_dir / "lang").rglob("en*") if p.is_file())


class Espeak:
    """One initialised espeak-ng library in this process (use `engine()` to share it)."""

    def __init__(self) -> None:
        library_path, data_dir = espeak_paths()
        try:
            self._lib = ctypes.CDLL(str(library_path))
        except OSError as error:
            raise SynthError(f"cannot load espeak-ng from {library_path}: {error}") from None
        self._declare_signatures()
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self.sample_rate = self._lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, str(data_dir).encode(), 0
        )
        if self.sample_rate <= 0:
            raise SynthError(f"espeak_Initialize failed with data folder {data_dir}")
        # Keep a reference: ctypes frees the trampoline if the Python object is collected.
        self._callback = _CALLBACK_TYPE(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._voice_name: str | None = None

    def _declare_signatures(self) -> None:
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        # Breathy variants (f2, f3, f5, victor, ...) add noise from espeak-ng's own random
        # generator, seeded differently in every process unless set (espeak-ng >= 1.51).
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]
            self._set_seed.restype = None

    def _collect(self, samples, count: int, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    def _set_voice(self, voice: Voice) -> None:
        if voice.name != self._voice_name:
            if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise SynthError(
                    f"espeak-ng has no voice {voice.name!r} (accent {voice.accent!r}, variant {voice.variant!r})"
                )
            self._voice_name = voice.name
        # Set every prosody parameter on every call: they carry over between voices.
        for parameter, value in ((PARAM_RATE, voice.rate), (PARAM_PITCH, voice.pitch),
                                 (PARAM_RANGE, voice.pitch_range), (PARAM_VOLUME, 100)):  # fmt: skip
            if self._lib.espeak_SetParameter(parameter, value, 0) != 0:
                raise SynthError(f"espeak-ng rejected parameter {parameter} = {value}")

    def synthesize(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        """`text` spoken by `voice`: float32 mono in [-1, 1] at `self.sample_rate` (22050 Hz).

        `seed` drives the breath noise of breathy voice variants.
        """
        data = text.encode("utf-8") + b"\0"
        with self._lock:
            self._set_voice(voice)
            if self._set_seed is not None:
                self._set_seed(seed % 2**31)
            self._chunks = []
            status = self._lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            chunks, self._chunks = self._chunks, []
        if status != 0:
            raise SynthError(f"espeak_Synth failed (status {status}) for {text!r} with voice {voice.name!r}")
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32) / 32768.0


_ENGINE_LOCK = threading.Lock()
_ENGINE: Espeak | None = None


def engine() -> Espeak:
    """The process-wide espeak-ng instance (the library holds global state: one per process)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = Espeak()
        return _ENGINE


# ---------------------------------------------------------------------------------------------
# Degradations applied to synthetic speech: background noise, channel colouring, mixing.
# Filters work on the spectrum of the whole clip (zero phase); clips are at most a few seconds.

NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "hum", "babble")
CHANNEL_KINDS: tuple[str, ...] = ("telephone", "muffled", "thin", "resonant")


def _unit_rms(signal: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(signal**2)))
    return (signal / rms if rms > 0 else signal).astype(np.float32)


def _shape_spectrum(white: np.ndarray, sample_rate: int, gain_of_frequency) -> np.ndarray:
    """Filter `white` by a magnitude response given as a function of frequency in Hz."""
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(white.shape[0], d=1.0 / sample_rate)
    return np.fft.irfft(spectrum * gain_of_frequency(freqs), n=white.shape[0])


def colored_noise(num_samples: int, exponent: float, rng: np.random.Generator, sample_rate: int = 16_000) -> np.ndarray:
    """Noise whose power falls as 1 / f**exponent (0 white, 1 pink, 2 brown); unit RMS."""
    white = rng.standard_normal(num_samples)
    lowest = sample_rate / max(num_samples, 1)  # keeps the DC bin finite

    def slope(freqs: np.ndarray) -> np.ndarray:
        return np.maximum(freqs, lowest) ** (-exponent / 2)

    return _unit_rms(_shape_spectrum(white, sample_rate, slope))


def hum_noise(num_samples: int, rng: np.random.Generator, sample_rate: int = 16_000) -> np.ndarray:
    """Mains hum (50 or 60 Hz and its harmonics, random levels) over a little hiss; unit RMS."""
    base = float(rng.choice([50.0, 60.0]))
    # Both mains frequencies repeat exactly every 0.1 s: compute one such cycle and tile it.
    cycle = np.arange(sample_rate // 10) / sample_rate
    hum = np.zeros(cycle.shape[0])
    for harmonic in range(1, 8):
        level = rng.uniform(0.2, 1.0) / harmonic
        hum += level * np.sin(2 * np.pi * base * harmonic * cycle + rng.uniform(0, 2 * np.pi))
    hum = np.resize(hum, num_samples)  # repeats the cycle
    hiss = 0.05 * rng.standard_normal(num_samples)
    return _unit_rms(hum + hiss)


def _syllable_envelope(num_samples: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A positive loudness contour that rises and falls 3-7 times a second, like syllables."""
    frame_rate = 100  # Hz; the contour is smooth, so it is drawn coarse and interpolated
    frames = num_samples * frame_rate // sample_rate + 2
    contour = _shape_spectrum(rng.standard_normal(frames), frame_rate, lambda freqs: (freqs < 7.0).astype(float))
    return np.interp(np.arange(num_samples) * frame_rate / sample_rate, np.arange(frames), np.abs(contour))


def babble_noise(num_samples: int, rng: np.random.Generator, sample_rate: int = 16_000, talkers: int = 6) -> np.ndarray:
    """Speech-like babble: several noises switched on and off at syllable rate, speech-band shaped.

    It has the long-term spectrum and the 3-7 Hz loudness modulation of overlapping talkers
    without containing words, so it cannot leak keywords into other classes. (Shaping the sum
    once equals shaping each talker, up to the slow envelope, at a sixth of the cost.)
    """

    def speech_band(freqs: np.ndarray) -> np.ndarray:
        high_pass = 1 / np.sqrt(1 + (150 / np.maximum(freqs, 1.0)) ** 4)
        low_pass = 1 / np.sqrt(1 + (freqs / 3500) ** 4)
        return high_pass * low_pass / np.sqrt(np.maximum(freqs, 100.0) / 100.0)

    mixture = np.zeros(num_samples)
    for _ in range(talkers):
        envelope = _syllable_envelope(num_samples, rng, sample_rate)
        mixture += rng.standard_normal(num_samples) * envelope / max(float(np.sqrt(np.mean(envelope**2))), 1e-9)
    return _unit_rms(_shape_spectrum(mixture, sample_rate, speech_band))


def make_noise(kind: str, num_samples: int, rng: np.random.Generator, sample_rate: int = 16_000) -> np.ndarray:
    """`num_samples` of background noise of `kind` (one of NOISE_KINDS), unit RMS, float32."""
    if kind == "hum":
        return hum_noise(num_samples, rng, sample_rate)
    if kind == "babble":
        return babble_noise(num_samples, rng, sample_rate)
    exponents = {"white": 0.0, "pink": 1.0, "brown": 2.0}
    if kind not in exponents:
        raise ValueError(f"unknown noise kind {kind!r}; valid kinds: {', '.join(NOISE_KINDS)}")
    return colored_noise(num_samples, exponents[kind], rng, sample_rate)


@dataclass(frozen=True)
class Channel:
    """A recording channel as a magnitude response: band limits and one resonance.

    telephone: band-pass low_hz..high_hz; muffled: low-pass at high_hz; thin: high-pass at
    low_hz; resonant: a peak of gain_db around centre_hz (a boxy room or a cheap microphone).
    """

    kind: str
    low_hz: float = 0.0
    high_hz: float = 0.0
    centre_hz: float = 0.0
    gain_db: float = 0.0

    def __post_init__(self) -> None:
        require(self.kind in CHANNEL_KINDS, "kind", f"{self.kind!r} is not one of {list(CHANNEL_KINDS)}")

    def response(self, freqs: np.ndarray) -> np.ndarray:
        """Gain at each frequency (Hz)."""
        safe = np.maximum(freqs, 1.0)
        gain = np.ones_like(safe)
        if self.kind in ("telephone", "thin"):
            order = 8 if self.kind == "telephone" else 4
            gain *= 1 / np.sqrt(1 + (self.low_hz / safe) ** order)
        if self.kind in ("telephone", "muffled"):
            order = 8 if self.kind == "telephone" else 4
            gain *= 1 / np.sqrt(1 + (safe / self.high_hz) ** order)
        if self.kind == "resonant":
            octaves = np.log2(safe / self.centre_hz)
            gain *= 1 + (10 ** (self.gain_db / 20) - 1) * np.exp(-0.5 * (octaves / 0.4) ** 2)
        return gain

    def apply(self, signal: np.ndarray, sample_rate: int = 16_000) -> np.ndarray:
        return _shape_spectrum(signal, sample_rate, self.response).astype(np.float32)


def random_channel(rng: np.random.Generator) -> Channel:
    """A channel of a random kind with random corner frequencies."""
    kind = str(rng.choice(CHANNEL_KINDS))
    if kind == "telephone":
        return Channel(kind, low_hz=float(rng.uniform(250, 450)), high_hz=float(rng.uniform(2800, 3600)))
    if kind == "muffled":
        return Channel(kind, high_hz=float(rng.uniform(1200, 3000)))
    if kind == "thin":
        return Channel(kind, low_hz=float(rng.uniform(300, 900)))
    return Channel(kind, centre_hz=float(rng.uniform(500, 3000)), gain_db=float(rng.uniform(6, 14)))


def trim_silence(audio: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Drop leading and trailing samples quieter than `threshold` (the synthesiser's pauses)."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return audio[:0]
    return audio[loud[0] : loud[-1] + 1]


def noise_scale_for_snr(speech: np.ndarray, snr_db: float) -> float:
    """Factor for unit-RMS noise so that the speech-to-noise power ratio is `snr_db`.

    The speech power is measured over `speech` alone (the spoken part, not the padded clip).
    """
    power = float(np.mean(speech**2)) if speech.size else 0.0
    return float(np.sqrt(power / 10 ** (snr_db / 10)))


def espeak_version() -> str:
    """The espeak-ng version string (loads the library without initialising it)."""
    library_path, _ = espeak_paths()
    lib = ctypes.CDLL(str(library_path))
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    return (lib.espeak_Info(None) or b"unknown").decode()
