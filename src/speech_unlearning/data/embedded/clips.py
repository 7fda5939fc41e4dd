"""Every clip of the embedded corpus, decided up front from the config alone.

`kws_clips` and `sid_clips` turn an `EmbeddedConfig` into `ClipJob`s (what is said, by which
voice, how it is degraded) and the split list files, drawing from seeded generators in a fixed
order. Nothing here touches espeak-ng, so the clip list is the same in every process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .. import synth
from ..speech_commands import published_split
from .config import KEYWORDS, PHRASE_WORDS, SAMPLE_RATE, EmbeddedConfig

KWS_CLIP_SECONDS = 1.0
INTONATIONS: tuple[str, ...] = ("", ".", "?", "!", ",")  # punctuation changes the pitch contour
SID_SPLIT_CODES = {"train": 1, "dev": 2, "test": 3}
SESSION_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


@dataclass(frozen=True)
class ClipJob:
    """One file to render: what is said, by which voice, and how it is degraded."""

    relpath: str  # path under the corpus root, "/"-separated
    text: str
    voice: synth.Voice
    clip_samples: int  # length of the file at 16 kHz
    position: float  # where the speech starts within the clip's free space, 0..1
    noise: str  # one of synth.NOISE_KINDS
    snr_db: float
    channel: synth.Channel | None
    peak: float  # peak level of the finished clip
    seed: int  # seeds the noise


def draw_speaker_hashes(config: EmbeddedConfig, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(speaker hash, split) pairs whose published split fills the configured quotas exactly.

    Hashes are drawn at random and kept only while their split still has room, so the split
    lists agree with the dataset's hash rule and every split has its share of speakers.
    """
    quotas = config.speaker_quotas()
    taken = dict.fromkeys(quotas, 0)
    chosen: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(chosen) < config.kws_speakers:
        key = f"{int(rng.integers(0, 2**32)):08x}"
        split = published_split(key)
        if key in seen or taken[split] >= quotas[split]:
            continue
        seen.add(key)
        taken[split] += 1
        chosen.append((key, split))
    return chosen


def draw_voice(
    config: EmbeddedConfig, rng: np.random.Generator, variants: Sequence[str], accent: str | None = None
) -> synth.Voice:
    """A speaker's base voice: a variant out of `variants`, accent, pitch, pitch range and rate."""
    return synth.Voice(
        accent=accent if accent is not None else str(rng.choice(config.accents)),
        variant=str(rng.choice(variants)),
        rate=int(rng.integers(130, 211)),
        pitch=int(rng.integers(25, 76)),
        pitch_range=int(rng.integers(20, 81)),
    )


def jitter_voice(voice: synth.Voice, config: EmbeddedConfig, rng: np.random.Generator) -> synth.Voice:
    """The same speaker on another occasion: pitch, range and rate moved a little."""
    pitch = voice.pitch + int(rng.integers(-config.pitch_jitter, config.pitch_jitter + 1))
    pitch_range = voice.pitch_range + int(rng.integers(-config.pitch_jitter, config.pitch_jitter + 1))
    rate = voice.rate * (1 + rng.uniform(-config.rate_jitter, config.rate_jitter))
    return dataclasses.replace(
        voice,
        pitch=int(np.clip(pitch, 0, 100)),
        pitch_range=int(np.clip(pitch_range, 0, 100)),
        rate=int(np.clip(round(rate), 80, 450)),
    )


def _degraded_job(
    relpath: str, text: str, voice: synth.Voice, clip_samples: int, rng: np.random.Generator,
    noise: str, snr_db: float, channel: synth.Channel | None,
) -> ClipJob:  # fmt: skip
    return ClipJob(
        relpath=relpath,
        text=text + str(rng.choice(INTONATIONS)),
        voice=voice,
        clip_samples=clip_samples,
        position=float(rng.uniform(0.0, 1.0)),
        noise=noise,
        snr_db=float(snr_db),
        channel=channel,
        peak=float(rng.uniform(0.2, 0.9)),
        seed=int(rng.integers(0, 2**63 - 1)),
    )


def _random_condition(config: EmbeddedConfig, rng: np.random.Generator) -> tuple[str, float, synth.Channel | None]:
    noise = str(rng.choice(synth.NOISE_KINDS))
    snr_db = float(rng.uniform(config.snr_min_db, config.snr_max_db))
    channel = synth.random_channel(rng) if rng.random() < config.channel_probability else None
    return noise, snr_db, channel


def kws_clips(config: EmbeddedConfig) -> tuple[list[ClipJob], dict[str, str]]:
    """The KWS clips and the split list files (relative path -> text), under "kws/"."""
    rng = np.random.default_rng([config.seed, 1])
    clip_samples = int(KWS_CLIP_SECONDS * SAMPLE_RATE)
    jobs: list[ClipJob] = []
    listed: dict[str, list[str]] = {"validation": [], "test": []}
    # Held-out speakers may have voices no training speaker has, as new people do in real data.
    unseen = set(rng.choice(config.variants, size=config.kws_unseen_variants, replace=False).tolist())
    training_variants = [v for v in config.variants if v not in unseen]
    for speaker, split in draw_speaker_hashes(config, rng):
        voice = draw_voice(config, rng, training_variants if split == "train" else config.variants)
        unknown = rng.choice(len(config.unknown_words), size=config.unknown_per_speaker, replace=False)
        takes = [(word, n) for word in KEYWORDS for n in range(config.keyword_takes)]
        takes += [(config.unknown_words[i], 0) for i in sorted(unknown)]
        for word, n in takes:
            relpath = f"{word}/{speaker}_nohash_{n}.wav"
            condition = _random_condition(config, rng)
            spoken_by = jitter_voice(voice, config, rng)
            jobs.append(_degraded_job(f"kws/{relpath}", word, spoken_by, clip_samples, rng, *condition))
            if split in listed:
                listed[split].append(relpath)
    lists = {
        "kws/validation_list.txt": "".join(f"{p}\n" for p in sorted(listed["validation"])),
        "kws/testing_list.txt": "".join(f"{p}\n" for p in sorted(listed["test"])),
    }
    return jobs, lists


def _session_id(rng: np.random.Generator) -> str:
    """An 11-character id in the style of the YouTube video ids VoxCeleb1 uses as sessions."""
    return "".join(SESSION_ALPHABET[i] for i in rng.integers(0, len(SESSION_ALPHABET), size=11))


def _phrase(config: EmbeddedConfig, rng: np.random.Generator) -> str:
    count = int(rng.integers(config.phrase_min_words, config.phrase_max_words + 1))
    return " ".join(str(w) for w in rng.choice(PHRASE_WORDS, size=count, replace=False))


def _sid_speaker_voices(config: EmbeddedConfig, rng: np.random.Generator) -> list[synth.Voice]:
    """One voice per speaker, each with its own (variant, accent) pair so no two coincide."""
    pairs = [(v, a) for v in config.variants for a in config.accents]
    picks = rng.choice(len(pairs), size=config.sid_speakers, replace=False)
    return [draw_voice(config, rng, [pairs[i][0]], pairs[i][1]) for i in picks]


def sid_clips(config: EmbeddedConfig) -> tuple[list[ClipJob], dict[str, str]]:
    """The SID utterances and iden_split.txt (relative path -> text), under "sid/"."""
    rng = np.random.default_rng([config.seed, 2])
    clip_samples = int(round(config.sid_clip_seconds * SAMPLE_RATE))
    jobs: list[ClipJob] = []
    split_lines: list[str] = []
    train_sessions = config.sid_sessions - config.sid_dev_sessions - config.sid_test_sessions
    session_codes = [SID_SPLIT_CODES["train"]] * train_sessions
    session_codes += [SID_SPLIT_CODES["dev"]] * config.sid_dev_sessions
    session_codes += [SID_SPLIT_CODES["test"]] * config.sid_test_sessions
    for index, voice in enumerate(_sid_speaker_voices(config, rng)):
        speaker = f"id{10001 + index}"
        # Whole sessions are held out for dev and test: the model meets a new channel there.
        for code in rng.permutation(session_codes):
            session = _session_id(rng)
            noise, session_snr, channel = _random_condition(config, rng)  # one condition per session
            for number in range(1, config.sid_utterances_per_session + 1):
                snr_db = np.clip(session_snr + rng.uniform(-3, 3), config.snr_min_db, config.snr_max_db)
                relpath = f"{speaker}/{session}/{number:05d}.wav"
                job = _degraded_job(
                    f"sid/wav/{relpath}", _phrase(config, rng), jitter_voice(voice, config, rng),
                    clip_samples, rng, noise, snr_db, channel,
                )  # fmt: skip
                jobs.append(job)
                split_lines.append(f"{code} {relpath}\n")
    return jobs, {"sid/iden_split.txt": "".join(split_lines)}
