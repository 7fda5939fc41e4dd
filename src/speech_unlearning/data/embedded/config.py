"""What determines the embedded corpus: `EmbeddedConfig`, its word and voice lists, and the generator version.

Equal configs (and an equal `GENERATOR_VERSION`) give byte-identical files; both are recorded in
the manifest, and a cached corpus is reused only while they match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ...config import require, to_dict

SAMPLE_RATE = 16_000
# Bump whenever the generation code (clips.py, render.py) changes what a config produces:
# cached corpora then rebuild.
GENERATOR_VERSION = 1

KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# The auxiliary words of Speech Commands v0.01 (they become `_unknown_` in the 12-class setup).
AUXILIARY_WORDS: tuple[str, ...] = (
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)  # fmt: skip
# Words for the speaker-ID phrases (content is irrelevant to the label, so it varies freely).
PHRASE_WORDS: tuple[str, ...] = (
    "after", "always", "answer", "apple", "around", "autumn", "basket", "before", "behind",
    "better", "bottle", "bridge", "bright", "candle", "carry", "castle", "change", "city",
    "cloudy", "coffee", "corner", "country", "danger", "desert", "dinner", "doctor", "early",
    "engine", "evening", "family", "father", "field", "finger", "flower", "forest", "garden",
    "golden", "guitar", "harbor", "heavy", "hollow", "island", "jacket", "kitchen", "ladder",
    "letter", "little", "market", "meadow", "middle", "morning", "mother", "music", "narrow",
    "number", "ocean", "orange", "paper", "pencil", "people", "pillow", "planet", "pocket",
    "purple", "quiet", "rabbit", "river", "rocket", "salmon", "second", "silver", "simple",
    "spider", "spring", "summer", "table", "thunder", "ticket", "tomorrow", "valley", "velvet",
    "village", "walking", "water", "window", "winter", "yellow", "yesterday",
)  # fmt: skip
# Voice variants that sound like plausible talkers (no whisper, croak or robot voices).
DEFAULT_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "Alex", "adam", "anika", "benjamin", "david", "edward",
    "john", "linda", "max", "paul", "robert", "steph", "travis", "victor",
)  # fmt: skip
# English accents that exist as voice files (en-shaw is left out: it expects the Shavian script).
DEFAULT_ACCENTS: tuple[str, ...] = (
    "en", "en-us", "en-us-nyc", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-029",
)  # fmt: skip


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class EmbeddedConfig:
    """Everything that determines the embedded corpus; equal configs give byte-identical files."""

    seed: int = field(default=0, metadata=_help("seed of every random choice"))
    # Keyword spotting (Speech Commands layout)
    kws_speakers: int = field(default=200, metadata=_help("synthetic speakers in the KWS corpus"))
    keyword_takes: int = field(default=1, metadata=_help("takes of each of the 10 keywords per speaker"))
    unknown_words: tuple[str, ...] = field(
        default=AUXILIARY_WORDS[:12], metadata=_help("words that form the `_unknown_` class")
    )
    unknown_per_speaker: int = field(default=5, metadata=_help("distinct unknown words each KWS speaker says once"))
    kws_validation_fraction: float = field(default=0.10, metadata=_help("share of KWS speakers in validation"))
    kws_test_fraction: float = field(default=0.15, metadata=_help("share of KWS speakers in test"))
    kws_unseen_variants: int = field(
        default=6, metadata=_help("voice variants that only validation / test KWS speakers use (new voices)")
    )
    background_noise_seconds: float = field(default=20.0, metadata=_help("length of each `_background_noise_` file"))
    # Speaker identification (VoxCeleb1 layout)
    sid_speakers: int = field(default=40, metadata=_help("speakers in the SID corpus (ids id10001 on)"))
    sid_sessions: int = field(default=7, metadata=_help("sessions (channel conditions) per SID speaker"))
    sid_utterances_per_session: int = field(default=5, metadata=_help("utterances per session"))
    sid_dev_sessions: int = field(default=1, metadata=_help("sessions per speaker in the dev split (2)"))
    sid_test_sessions: int = field(default=1, metadata=_help("sessions per speaker in the test split (3)"))
    sid_clip_seconds: float = field(default=2.0, metadata=_help("length of every SID file"))
    phrase_min_words: int = field(default=2, metadata=_help("fewest words in a SID phrase"))
    phrase_max_words: int = field(default=4, metadata=_help("most words in a SID phrase"))
    # Variation and degradations
    snr_min_db: float = field(default=5.0, metadata=_help("lowest speech-to-noise ratio, dB"))
    snr_max_db: float = field(default=30.0, metadata=_help("highest speech-to-noise ratio, dB"))
    channel_probability: float = field(default=0.5, metadata=_help("chance that a clip / session has a channel filter"))
    pitch_jitter: int = field(default=8, metadata=_help("per-utterance pitch change, +- espeak pitch units"))
    rate_jitter: float = field(default=0.10, metadata=_help("per-utterance speaking-rate change, +- fraction"))
    variants: tuple[str, ...] = field(default=DEFAULT_VARIANTS, metadata=_help("espeak-ng voice variants to draw from"))
    accents: tuple[str, ...] = field(default=DEFAULT_ACCENTS, metadata=_help("espeak-ng English accents to draw from"))
    shards: int = field(default=8, metadata=_help("fixed work units, each rendered by a fresh process"))

    def __post_init__(self) -> None:
        self._check_kws()
        self._check_sid()
        self._check_variation()

    def _check_kws(self) -> None:
        require(self.keyword_takes >= 1, "keyword_takes", f"must be >= 1, got {self.keyword_takes}")
        require(len(self.unknown_words) >= 1, "unknown_words", "needs at least one word")
        require(len(set(self.unknown_words)) == len(self.unknown_words), "unknown_words", "has duplicates")
        clash = sorted(set(self.unknown_words) & set(KEYWORDS))
        require(not clash, "unknown_words", f"must not contain keywords ({', '.join(clash)})")
        require(
            all(w.isalpha() and w.islower() for w in self.unknown_words),
            "unknown_words", "must be lower-case words (they become folder names)",
        )  # fmt: skip
        require(
            1 <= self.unknown_per_speaker <= len(self.unknown_words),
            "unknown_per_speaker", f"must be in [1, {len(self.unknown_words)}], got {self.unknown_per_speaker}",
        )  # fmt: skip
        for name in ("kws_validation_fraction", "kws_test_fraction"):
            value = getattr(self, name)
            require(0 < value < 0.5, name, f"must be in (0, 0.5), got {value}")
        require(
            min(self.speaker_quotas().values()) >= 1,
            "kws_speakers", f"{self.kws_speakers} speakers leave a split empty at these fractions",
        )  # fmt: skip
        require(
            0 <= self.kws_unseen_variants < len(self.variants),
            "kws_unseen_variants", f"must be in [0, {len(self.variants) - 1}] (training needs a voice variant)",
        )  # fmt: skip
        require(
            self.background_noise_seconds >= 10,
            "background_noise_seconds", "must be >= 10 (each split cuts its silence crops from them)",
        )  # fmt: skip

    def _check_sid(self) -> None:
        require(2 <= self.sid_speakers <= 89_999, "sid_speakers", f"must be in [2, 89999], got {self.sid_speakers}")
        require(self.sid_sessions >= 1, "sid_sessions", f"must be >= 1, got {self.sid_sessions}")
        require(self.sid_utterances_per_session >= 1, "sid_utterances_per_session", "must be >= 1")
        require(self.sid_dev_sessions >= 1, "sid_dev_sessions", "must be >= 1")
        require(self.sid_test_sessions >= 1, "sid_test_sessions", "must be >= 1")
        require(
            self.sid_dev_sessions + self.sid_test_sessions < self.sid_sessions,
            "sid_test_sessions",
            f"dev + test sessions ({self.sid_dev_sessions} + {self.sid_test_sessions}) must leave training "
            f"sessions out of {self.sid_sessions}",
        )
        seconds = self.sid_clip_seconds
        require(1.0 <= seconds <= 10.0, "sid_clip_seconds", f"must be in [1, 10], got {seconds}")
        words = (self.phrase_min_words, self.phrase_max_words)
        require(1 <= words[0] <= words[1], "phrase_min_words", f"must be in [1, phrase_max_words], got {words[0]}")
        require(self.phrase_max_words <= 8, "phrase_max_words", "must be <= 8 (phrases must fit the clip)")
        pairs = len(self.variants) * len(self.accents)
        require(pairs >= self.sid_speakers, "sid_speakers", f"needs a (variant, accent) pair each: only {pairs} exist")

    def _check_variation(self) -> None:
        require(self.snr_min_db <= self.snr_max_db, "snr_min_db", f"must be <= snr_max_db ({self.snr_max_db})")
        require(-10 <= self.snr_min_db and self.snr_max_db <= 60, "snr_min_db", "SNRs must lie in [-10, 60] dB")
        require(0 <= self.channel_probability <= 1, "channel_probability", "must be in [0, 1]")
        require(0 <= self.pitch_jitter <= 30, "pitch_jitter", f"must be in [0, 30], got {self.pitch_jitter}")
        require(0 <= self.rate_jitter <= 0.3, "rate_jitter", f"must be in [0, 0.3], got {self.rate_jitter}")
        require(len(self.variants) >= 1, "variants", "needs at least one voice variant")
        require(len(self.accents) >= 1, "accents", "needs at least one accent")
        require(1 <= self.shards <= 256, "shards", f"must be in [1, 256], got {self.shards}")

    def speaker_quotas(self) -> dict[str, int]:
        """KWS speakers per split ("train", "validation", "test")."""
        validation = int(round(self.kws_speakers * self.kws_validation_fraction))
        test = int(round(self.kws_speakers * self.kws_test_fraction))
        return {"train": self.kws_speakers - validation - test, "validation": validation, "test": test}

    def record(self) -> dict[str, Any]:
        """The config as it is stored in the manifest (JSON types: tuples become lists)."""
        return json.loads(json.dumps(to_dict(self)))
