"""Rendering: turning the `ClipJob`s of clips.py into WAV files, shard by shard, in fresh processes.

espeak-ng's output depends on the calls made before it in the same process, while the same
call sequence in a fresh process repeats bit for bit. So the jobs are dealt into fixed shards
and each shard is rendered by a freshly spawned process: the files depend neither on the
number of worker processes nor on anything the calling process did before.

The long `_background_noise_` files are made here too; they use no espeak-ng (numpy only), so
they are rendered in the calling process.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from ...io import sha256_bytes
from .. import synth
from ..corpus import CorpusError
from .config import SAMPLE_RATE, EmbeddedConfig
from .clips import ClipJob


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


def write_file(root: Path, relpath: str, data: bytes) -> tuple[str, dict[str, Any]]:
    """Write a file of the corpus under construction; its manifest entry."""
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)  # the whole folder is moved into place atomically once complete
    return relpath, {"sha256": sha256_bytes(data), "bytes": len(data)}


def render_shard(root: str, jobs: list[ClipJob]) -> dict[str, dict[str, Any]]:
    """Render `jobs` in order into `root`; manifest entries by relative path. Run in a fresh process."""
    return dict(write_file(Path(root), job.relpath, encode_wav(render_clip(job))) for job in jobs)


def _render_shard_task(task: tuple[str, list[ClipJob]]) -> tuple[int, dict[str, dict[str, Any]]]:
    root, jobs = task
    return len(jobs), render_shard(root, jobs)


def render_all(root: Path, jobs: list[ClipJob], shards: int, workers: int, progress: bool) -> dict[str, dict[str, Any]]:
    """Render every job, shard by shard, each shard in its own freshly spawned process.

    Shard k holds jobs k, k + shards, k + 2 * shards, ... in clip-list order, so the result does not
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
