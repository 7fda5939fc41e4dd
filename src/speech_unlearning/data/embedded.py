"""The embedded default corpus: synthetic speech made with espeak-ng, built once and cached.

It lets every command run with no download. Two sub-corpora share one root:

    ROOT/manifest.json   config, versions, every file's sha256 and size, the corpus hash
    ROOT/kws/            Speech Commands layout: <word>/<speaker-hash>_nohash_<n>.wav (1 s),
                         validation_list.txt, testing_list.txt, _background_noise_/*.wav
    ROOT/sid/            VoxCeleb1 layout: wav/idXXXXX/<session>/<nnnnn>.wav (2 s), iden_split.txt

and both are read back through the real loaders (`load_speech_commands(setup="superb12")` and
`load_voxceleb1`), so the default corpus exercises the same code as real data.

A synthetic speaker is a seeded combination of an espeak-ng voice variant (m1, f3, klatt, ...),
an English accent, a base pitch, a pitch range and a speaking rate. Each utterance jitters pitch
and rate, varies the intonation, sits at a random place in its clip, is mixed with background
noise (white / pink / brown / hum / babble) at a random SNR, may pass through a channel filter,
and is resampled from 22,050 Hz to 16 kHz. KWS speakers are split by the Speech Commands hash
rule (no speaker in two splits), and some voice variants are kept for held-out speakers only;
each SID speaker records several "sessions" (a session is one channel condition: noise kind,
SNR, filter), and whole sessions of every speaker are held out for dev and test, as VoxCeleb1
holds out videos.

Reproducibility: espeak-ng's output depends on the calls made before it in the same process,
while the same call sequence in a fresh process repeats bit for bit (once its breath-noise
generator is seeded per clip, see `synth.Espeak.synthesize`). The clips are therefore
planned up front, dealt into `config.shards` fixed shards, and each shard is rendered by a fresh
spawned process, so the files do not depend on the number of worker processes or on anything
the calling process did before.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .. import __version__
from ..config import ConfigError, from_mapping, require, to_dict
from ..io import (
    TMP_PREFIX,
    atomic_directory,
    atomic_write_json,
    clean_stale_temporaries,
    read_json,
    sha256_bytes,
    sha256_file,
    sha256_json,
)
from . import synth
from .corpus import CORPORA, Corpus, CorpusError, default_cache_dir
from .speech_commands import published_split

SAMPLE_RATE = 16_000
KWS_CLIP_SECONDS = 1.0
MANIFEST = "manifest.json"
# Bump whenever the generation code changes what a config produces: cached corpora then rebuild.
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
INTONATIONS: tuple[str, ...] = ("", ".", "?", "!", ",")  # punctuation changes the pitch contour
SID_SPLIT_CODES = {"train": 1, "dev": 2, "test": 3}
SESSION_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


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


# ----------------------------------------------------------------------------------------------
# Planning: every clip is decided in the parent process, from the config alone.


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


def plan_kws(config: EmbeddedConfig) -> tuple[list[ClipJob], dict[str, str]]:
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


def plan_sid(config: EmbeddedConfig) -> tuple[list[ClipJob], dict[str, str]]:
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


# ----------------------------------------------------------------------------------------------
# Rendering: runs inside fresh worker processes.


def render_clip(job: ClipJob) -> np.ndarray:
    """The finished clip of `job` as int16 samples at 16 kHz (SynthError if nothing was spoken)."""
    import soxr

    engine = synth.engine()
    speech = synth.trim_silence(engine.synthesize(job.text, job.voice, seed=job.seed))
    if speech.size == 0:
        raise synth.SynthError(f"espeak-ng produced no audio for {job.text!r} with voice {job.voice.name!r}")
    speech = soxr.resample(speech, engine.sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    speech = speech[: job.clip_samples]  # a phrase too long for the clip keeps its start
    start = int(round(job.position * (job.clip_samples - speech.shape[0])))
    clip = np.zeros(job.clip_samples, dtype=np.float32)
    clip[start : start + speech.shape[0]] = speech
    rng = np.random.default_rng(job.seed)
    noise = synth.make_noise(job.noise, job.clip_samples, rng, SAMPLE_RATE)
    clip = clip + synth.noise_scale_for_snr(speech, job.snr_db) * noise
    if job.channel is not None:
        clip = job.channel.apply(clip, SAMPLE_RATE)
    clip = clip * (job.peak / max(float(np.abs(clip).max()), 1e-9))
    return np.round(np.clip(clip, -1.0, 1.0) * 32767).astype(np.int16)


def encode_wav(samples: np.ndarray) -> bytes:
    """16-bit PCM mono WAV bytes at 16 kHz (no timestamps: equal samples give equal bytes)."""
    import soundfile

    buffer = BytesIO()
    soundfile.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _write(root: Path, relpath: str, data: bytes) -> tuple[str, dict[str, Any]]:
    """Write a file of the corpus under construction; its manifest entry."""
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)  # the whole folder is moved into place atomically once complete
    return relpath, {"sha256": sha256_bytes(data), "bytes": len(data)}


def render_shard(root: str, jobs: list[ClipJob]) -> dict[str, dict[str, Any]]:
    """Render `jobs` in order into `root`; manifest entries by relative path. Run in a fresh process."""
    return dict(_write(Path(root), job.relpath, encode_wav(render_clip(job))) for job in jobs)


def _render_shard_task(task: tuple[str, list[ClipJob]]) -> tuple[int, dict[str, dict[str, Any]]]:
    root, jobs = task
    return len(jobs), render_shard(root, jobs)


def render_all(root: Path, jobs: list[ClipJob], shards: int, workers: int, progress: bool) -> dict[str, dict[str, Any]]:
    """Render every job, shard by shard, each shard in its own freshly spawned process.

    Shard k holds jobs k, k + shards, k + 2 * shards, ... in plan order, so the result does not
    depend on `workers`. "spawn" (never fork) guarantees a process with no espeak-ng history.
    Each shard gets a one-process executor, at most `workers` at a time: a worker that dies
    (killed, out of memory) stops the build with a CorpusError instead of hanging it, which a
    multiprocessing.Pool does when it silently replaces a dead worker and loses its task.
    """
    from tqdm import tqdm

    tasks = deque(task for task in ((str(root), jobs[k::shards]) for k in range(shards)) if task[1])
    entries: dict[str, dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")
    running: dict[Future, ProcessPoolExecutor] = {}
    try:
        with tqdm(total=len(jobs), desc="embedded corpus", unit="clip", disable=not progress) as bar:
            while tasks or running:
                while tasks and len(running) < workers:
                    executor = ProcessPoolExecutor(max_workers=1, mp_context=context)
                    running[executor.submit(_render_shard_task, tasks.popleft())] = executor
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    running.pop(future).shutdown()
                    try:
                        count, shard_entries = future.result()
                    except BrokenProcessPool:
                        raise CorpusError(
                            "embedded corpus: a render process died (killed, or out of memory) during the build; "
                            "nothing was kept, run the build again"
                        ) from None
                    entries.update(shard_entries)
                    bar.update(count)
    finally:
        for executor in running.values():  # after an error: let the others stop before the folder goes
            executor.shutdown(wait=True, cancel_futures=True)
    return entries


def background_noise_files(config: EmbeddedConfig) -> dict[str, bytes]:
    """One long `_background_noise_` WAV per noise kind (the `_silence_` class is cut from them)."""
    rng = np.random.default_rng([config.seed, 3])
    num_samples = int(config.background_noise_seconds * SAMPLE_RATE)
    files = {}
    for kind in synth.NOISE_KINDS:
        noise = synth.make_noise(kind, num_samples, rng, SAMPLE_RATE)
        noise = noise * (float(rng.uniform(0.1, 0.5)) / float(np.abs(noise).max()))
        files[f"kws/_background_noise_/{kind}_noise.wav"] = encode_wav(np.round(noise * 32767).astype(np.int16))
    return files


# ----------------------------------------------------------------------------------------------
# Building, reuse and verification.


def embedded_root(cache_dir: str | Path) -> Path:
    """Where the embedded corpus lives inside a cache folder."""
    return Path(cache_dir) / "corpora" / "embedded"


def check_voices(config: EmbeddedConfig) -> None:
    """ConfigError naming any variant or accent that the installed espeak-ng does not have."""
    missing_variants = sorted(set(config.variants) - set(synth.available_variants()))
    require(not missing_variants, "variants", f"not found in espeak-ng: {', '.join(missing_variants)}")
    missing_accents = sorted(set(config.accents) - set(synth.available_english_accents()))
    require(not missing_accents, "accents", f"not found in espeak-ng: {', '.join(missing_accents)}")


def _counts(kws_jobs: list[ClipJob], lists: dict[str, str], sid_text: str) -> dict[str, Any]:
    listed = {split: len(text.splitlines()) for split, text in lists.items()}
    kws_validation, kws_test = listed["kws/validation_list.txt"], listed["kws/testing_list.txt"]
    words: dict[str, int] = {}
    for job in kws_jobs:
        word = job.relpath.split("/")[1]
        words[word] = words.get(word, 0) + 1
    sid_codes = [line.split()[0] for line in sid_text.splitlines()]
    return {
        "kws": {
            "train": len(kws_jobs) - kws_validation - kws_test,
            "validation": kws_validation,
            "test": kws_test,
            "words": dict(sorted(words.items())),
        },
        "sid": {
            "speakers": len({line.split()[1].split("/")[0] for line in sid_text.splitlines()}),
            **{name: sid_codes.count(str(code)) for name, code in SID_SPLIT_CODES.items()},
        },
    }


def _build_into(folder: Path, config: EmbeddedConfig, workers: int, progress: bool) -> dict[str, Any]:
    """Fill `folder` with the corpus and its manifest; returns the manifest."""
    started = time.perf_counter()
    kws_jobs, kws_lists = plan_kws(config)
    sid_jobs, sid_lists = plan_sid(config)
    entries = dict(_write(folder, relpath, text.encode()) for relpath, text in {**kws_lists, **sid_lists}.items())
    entries.update(_write(folder, relpath, data) for relpath, data in background_noise_files(config).items())
    entries.update(render_all(folder, kws_jobs + sid_jobs, config.shards, workers, progress))
    files = dict(sorted(entries.items()))
    manifest = {
        "format": "speech-unlearning embedded corpus",
        "generator_version": GENERATOR_VERSION,
        "package_version": __version__,
        "espeak_ng_version": synth.espeak_version(),
        "config": config.record(),
        "counts": _counts(kws_jobs, kws_lists, sid_lists["sid/iden_split.txt"]),
        "build_seconds": round(time.perf_counter() - started, 2),
        "corpus_hash": sha256_json(files),
        "files": files,
    }
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def _clean_leftovers(root: Path, managed: bool) -> None:
    """Remove temporaries of interrupted builds beside `root`.

    The cache's own corpora folder holds only our artefacts, so every `.tmp-*` there is stale;
    beside a user-chosen folder only the temporaries named after it are touched.
    """
    if managed:
        clean_stale_temporaries(root.parent)
        return
    if root.parent.is_dir():
        prefixes = (f"{TMP_PREFIX}{root.name}-", f"{TMP_PREFIX}old-{root.name}-")
        for entry in root.parent.iterdir():
            if entry.name.startswith(prefixes) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


def _refuse_foreign_folder(root: Path) -> None:
    """CorpusError if `root` holds files but no manifest: a rebuild would delete someone's data."""
    if root.is_dir() and not (root / MANIFEST).is_file() and any(root.iterdir()):
        raise CorpusError(
            f"{root}: not empty and not an embedded corpus (no {MANIFEST}); "
            "choose an empty or new folder for the embedded corpus"
        )
    if root.exists() and not root.is_dir():
        raise CorpusError(f"{root}: exists and is not a folder")


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of the corpus at `root`; FileNotFoundError / ValueError naming the file."""
    manifest = read_json(Path(root) / MANIFEST, "embedded corpus manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ValueError(f"{Path(root) / MANIFEST}: not an embedded corpus manifest (no file list)")
    return manifest


def _files_on_disk(root: Path) -> Iterable[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            yield Path(folder) / name


def verify_embedded_corpus(root: str | Path, full: bool = True) -> list[str]:
    """Problems found in the corpus at `root`, each naming its file; [] when it is intact.

    Checks that the manifest is readable and consistent, that every listed file exists with its
    recorded size, that no unlisted file was added and, when `full`, every file's sha256.
    """
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, ValueError) as error:
        return [str(error)]
    files: dict[str, dict[str, Any]] = manifest["files"]
    problems = []
    if manifest.get("corpus_hash") != sha256_json(files):
        problems.append(f"{root / MANIFEST}: file list does not match its corpus hash (manifest edited)")
    for relpath, record in files.items():
        path = root / relpath
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != record.get("bytes"):
            problems.append(f"{path}: {path.stat().st_size} bytes, the manifest records {record.get('bytes')}")
        elif full and sha256_file(path) != record.get("sha256"):
            problems.append(f"{path}: content differs from the manifest (sha256 mismatch)")
    for path in sorted(_files_on_disk(root)):
        relpath = path.relative_to(root).as_posix()
        if relpath != MANIFEST and relpath not in files:
            problems.append(f"{path}: not part of the corpus (absent from the manifest)")
    return problems


def embedded_corpus_is_current(root: str | Path, config: EmbeddedConfig) -> bool:
    """Quick reuse check: manifest readable, same generator and config, files present with their sizes.

    File contents are not hashed here (that is `verify_embedded_corpus(full=True)`).
    """
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, ValueError):
        return False
    if manifest.get("generator_version") != GENERATOR_VERSION or manifest.get("config") != config.record():
        return False
    return not verify_embedded_corpus(root, full=False)


def build_embedded_corpus(
    cache_dir: str | Path | None,
    config: EmbeddedConfig = EmbeddedConfig(),
    force: bool = False,
    progress: bool = True,
    *,
    root: str | Path | None = None,
    workers: int = 2,
) -> Path:
    """Make sure the embedded corpus for `config` exists; returns its root.

    The root is `root` when given, else `embedded_root(cache_dir)` (`cache_dir` None: the
    default cache). An existing corpus is reused when `embedded_corpus_is_current` (unless
    `force`); otherwise it is rebuilt in a temporary folder that replaces the old one only when
    complete. `workers` processes render the clips (the files do not depend on it). Raises
    SynthError when espeak-ng is unavailable, ConfigError for a voice the installed espeak-ng
    lacks, and CorpusError when `root` is a non-empty folder that is not an embedded corpus
    (it would be replaced).
    """
    managed = root is None
    if root is None:
        root = embedded_root(cache_dir if cache_dir is not None else default_cache_dir())
    root = Path(root).expanduser()
    require(workers >= 1, "workers", f"must be >= 1, got {workers}")
    _clean_leftovers(root, managed)
    if not force and embedded_corpus_is_current(root, config):
        return root
    _refuse_foreign_folder(root)
    check_voices(config)
    with atomic_directory(root) as folder:
        _build_into(folder, config, workers, progress)
    return root


# ----------------------------------------------------------------------------------------------
# The registered loader.

LOADER_OPTIONS = ("config", "progress", "workers", "force")


def stored_config(root: str | Path) -> EmbeddedConfig | None:
    """The config of the valid corpus at `root`, or None when there is none (or it is damaged)."""
    try:
        config = from_mapping(EmbeddedConfig, read_manifest(root)["config"])
    except (FileNotFoundError, ValueError):  # ConfigError is a ValueError too
        return None
    return config if embedded_corpus_is_current(root, config) else None


def _config_from_options(options: dict[str, Any], root: Path) -> EmbeddedConfig:
    """The config the loader should use.

    Explicit options win: `config=` (an EmbeddedConfig or a mapping) and/or EmbeddedConfig
    fields given directly (seed=1). Without them, the valid corpus already at `root` is used
    whatever its config (so `speech-unlearn corpus build --seed 1` is what later commands
    read), and the default config is built when there is none.
    """
    given = options.pop("config", None)
    overrides = {key: options.pop(key) for key in list(options) if key not in LOADER_OPTIONS}
    if given is None and not overrides:
        return stored_config(root) or EmbeddedConfig()
    if isinstance(given, EmbeddedConfig):
        base = to_dict(given)
    elif given is None or isinstance(given, dict):
        base = dict(given or {})
    else:
        raise CorpusError(
            f"corpus 'embedded': option config must be an EmbeddedConfig or a mapping, got {type(given).__name__}"
        )
    try:
        return from_mapping(EmbeddedConfig, {**base, **overrides}, where="corpus 'embedded'")
    except ConfigError as error:
        raise CorpusError(str(error)) from None


@CORPORA.register("embedded")
def load_embedded(task: str, path: str | None = None, cache_dir: str | Path | None = None, **options) -> Corpus:
    """Corpus spec `embedded` (in the cache) or `embedded:PATH`: builds if needed, then reads it.

    Options: `config` (EmbeddedConfig or mapping) or any EmbeddedConfig field (e.g. seed=1);
    without them the valid corpus already there is read, or the default one is built (see
    `_config_from_options`). Also `progress` (default True), `workers` (default 2) and `force`
    (rebuild). The KWS task reads
    ROOT/kws with `load_speech_commands(setup="superb12")`, the SID task reads ROOT/sid with
    `load_voxceleb1(clip_seconds=config.sid_clip_seconds)`.
    """
    if task not in ("kws", "sid"):
        raise CorpusError(f"corpus 'embedded' provides the tasks kws, sid, not {task!r}")
    options = dict(options)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = Path(path).expanduser() if path else embedded_root(cache_dir)
    config = _config_from_options(options, root)
    root = build_embedded_corpus(
        cache_dir, config, force=bool(options.get("force", False)), progress=bool(options.get("progress", True)),
        root=root if path else None, workers=int(options.get("workers", 2)),
    )  # fmt: skip
    if task == "kws":
        from .speech_commands import load_speech_commands

        corpus = load_speech_commands(root / "kws", setup="superb12", cache_dir=cache_dir)
    else:
        from .voxceleb import load_voxceleb1

        corpus = load_voxceleb1(root / "sid", clip_seconds=config.sid_clip_seconds)
    manifest = read_manifest(root)
    info = {
        **corpus.info,
        "source": corpus.name,
        "corpus_hash": manifest["corpus_hash"],
        "embedded_config": manifest["config"],
    }
    return dataclasses.replace(corpus, name=f"embedded-{task}", info=info)
