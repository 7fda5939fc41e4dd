"""What every stage of a grid reads: its corpus and features (memoised per worker process), its
recipe, its forget split, the checkpoints and artefacts of the runs it depends on.

Kept apart from the stage functions (stages.py) so that other stage modules (ensembles.py) can
use them without importing the stage table that lists them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..io import atomic_directory, atomic_write_json
from .executors import Job, StageResult

CORPUS_FILE = "corpus.json"
FORGET_SPLIT_FILE = "split.json"
MODEL_FOLDER = "model"
SUMMARY_FILE = "summary.json"
# Classes that are not a keyword anyone would ask to retire: never drawn as class-unlearning targets.
NON_KEYWORD_CLASSES = ("_unknown_", "_silence_")

# Per-process memo of loaded corpora and feature arrays: a worker that runs many runs of the same
# corpus loads it once (features are memory-mapped, so this costs no memory per run).
_CORPORA: dict[tuple, Any] = {}
_FEATURES: dict[tuple, tuple[np.ndarray, Any]] = {}


def relative_path(job: Job, path: Path) -> str:
    return str(Path(path).resolve().relative_to(Path(job.run_dir).resolve()))


def summary_result(job: Job, summary: dict[str, Any], seconds: float) -> StageResult:
    """Write `summary` as the run's only artefact, summary.json (atomically), and return it as the
    run's result (the stages that produce no model: tune, ensemble)."""
    with atomic_directory(job.folder) as folder:
        atomic_write_json(folder / SUMMARY_FILE, summary)
    return StageResult(metrics=summary, artefacts={"summary": relative_path(job, Path(job.folder) / SUMMARY_FILE)},
                       seconds=seconds)


def configure_process(job: Job) -> None:
    """Limit torch's threads to the CPUs reserved for this run (pool and Ray workers)."""
    threads = job.extra.get("threads")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))


def load_job_corpus(job: Job):
    """The corpus of `job` (memoised per process)."""
    from ..data.loaders import load_corpus

    key = (job.config["corpus"], job.config["task"], job.cache_dir)
    if key not in _CORPORA:
        if "<" in job.config["corpus"]:
            raise ValueError(f"corpus {job.config['corpus']}: the data path is required to run this grid")
        _CORPORA[key] = load_corpus(job.config["corpus"], job.config["task"], cache_dir=job.cache_dir)
    return _CORPORA[key]


def load_job_features(job: Job, corpus, model_name: str) -> tuple[np.ndarray, Any]:
    """(features (N, ...), FeatureSpec) of `corpus` as `model_name` consumes them (memoised)."""
    from ..models.registry import model_info
    from ..training.recipes import corpus_arrays

    kind = model_info(model_name).input_kind
    key = (corpus.fingerprint, kind, job.cache_dir)
    if key not in _FEATURES:
        _FEATURES[key] = corpus_arrays(corpus, kind, job.cache_dir, progress=False)
    return _FEATURES[key]


def train_config_for(job: Job):
    """The recipe of (task, model) with the grid's epochs / time cap, the run's seed and device."""
    from ..training.recipes import default_train_config

    settings = job.config.get("train", {})
    # Grids made before recipes could be chosen have no key: they trained with early-stop.
    config = default_train_config(job.config["task"], job.config["model"], settings.get("recipe", "early-stop"))
    # A Retrain replica of the reference set trains with its own seed (init and data order).
    changes: dict[str, Any] = {"seed": int(job.config.get("init_seed", job.config["seed"])), "progress": False}
    if settings.get("epochs"):
        changes["epochs"] = int(settings["epochs"])
    if settings.get("max_seconds"):
        changes["max_seconds"] = float(settings["max_seconds"])
    if job.extra.get("device"):
        changes["device"] = job.extra["device"]
    return dataclasses.replace(config, **changes)


def _eligible_classes(corpus) -> list[str]:
    """Class names with training items that a class-unlearning request may target."""
    train_labels = set(corpus.labels[corpus.indices("train")].tolist())
    return [name for index, name in enumerate(corpus.label_names)
            if index in train_labels and name not in NON_KEYWORD_CLASSES]


def _eligible_speakers(corpus) -> list[str]:
    """People with at least the median number of training recordings (so Df is not trivial);
    the pseudo-speakers of noise clips are never drawn."""
    from ..data.corpus import is_person

    train = corpus.indices("train")
    people = [index for index in train if is_person(corpus.speakers[index])]
    speakers, counts = np.unique(corpus.speakers[people], return_counts=True)
    return sorted(speakers[counts >= np.median(counts)].tolist())


def draw_forget_split(corpus, spec: Mapping[str, Any]):
    """The forget split described by a plan split spec, drawn deterministically from its seed."""
    from ..data.splits import class_split, sample_split, speaker_split

    scenario, seed = spec["scenario"], int(spec["seed"])
    if scenario == "sample":
        return sample_split(corpus, float(spec["ratio"]), seed)
    rng = np.random.default_rng([seed, len(scenario)])
    candidates = _eligible_classes(corpus) if scenario == "class" else _eligible_speakers(corpus)
    count = int(spec["count"])
    if count > len(candidates):
        raise ValueError(f"{scenario} unlearning of {count} targets: {corpus.name} has only {len(candidates)} candidates")
    chosen = sorted(rng.choice(candidates, size=count, replace=False).tolist())
    return class_split(corpus, chosen) if scenario == "class" else speaker_split(corpus, chosen)


def load_model(folder: str, device: str | None):
    """(model, metadata) of a checkpoint folder, moved to the run's device."""
    from ..models.checkpoint import load_checkpoint
    from ..training.runtime import select_device

    model, metadata = load_checkpoint(folder)
    return model.to(select_device(device or "auto")).eval(), metadata


def input_artefact(job: Job, key: str, name: str) -> str:
    artefacts = job.input(key)["artefacts"]
    if name not in artefacts:
        raise KeyError(f"run {key[:12]} has no artefact {name!r} (it has: {', '.join(artefacts)})")
    return artefacts[name]


def forget_split_of(job: Job, corpus):
    from ..data.splits import load_forget_split

    return load_forget_split(input_artefact(job, job.config["retrain"], "split"), corpus)
