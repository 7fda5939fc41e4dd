"""Shared by the studies that reuse a finished grid's models: its Retrain cells, with their data.

A cell is one forget split of one (task, backbone, seed): the split, its Original and its
Retrain checkpoints, and the feature arrays both were trained on.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.data.splits import load_forget_split
from speech_unlearning.experiments.store import ResultStore, RunRecord
from speech_unlearning.models.checkpoint import load_checkpoint
from speech_unlearning.models.registry import model_info
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.recipes import corpus_arrays


@dataclass
class Cell:
    label: str  # the Retrain run's label, e.g. "retrain kws kws-resnet seed=0 sample 5%"
    config: dict[str, Any]
    corpus: Any
    features: np.ndarray
    split: Any
    original: Any
    original_metadata: dict[str, Any]
    retrain: Any
    retrain_seconds: float
    retrain_metadata: dict[str, Any]  # its "train_config" is the recipe it ran (step-matched epochs included)

    def data(self, rows: np.ndarray) -> ArrayData:
        return ArrayData(self.features, self.corpus.labels, rows)


def finished_grid(run_dir: Path) -> ResultStore:
    """The results store of a `speech-unlearn bench` run folder; exits with one line naming the folder
    if it has none (a study of an empty folder would print nothing useful)."""
    try:
        return ResultStore.existing(run_dir)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None


def grid_cells(run_dir: Path, cache_dir: str | None, only: list[str]) -> Iterator[Cell]:
    """Every finished Retrain cell of the grid whose label contains one of `only` (all if empty)."""
    store = finished_grid(run_dir)
    originals = store.records(stage="original", status="done")
    loaded: dict[tuple, Any] = {}
    for record in store.records(stage="retrain", status="done"):
        if only and not any(text in record.label for text in only):
            continue
        config = record.config
        key = (config["corpus"], config["task"], model_info(config["model"]).input_kind)
        if key not in loaded:
            corpus = load_corpus(config["corpus"], config["task"], cache_dir=cache_dir)
            loaded[key] = corpus, corpus_arrays(corpus, key[2], cache_dir, progress=False)[0]
        corpus, features = loaded[key]
        original, metadata = load_checkpoint(run_dir / _original_of(record, originals).artefacts["checkpoint"])
        retrain, retrain_metadata = load_checkpoint(run_dir / record.artefacts["checkpoint"])
        yield Cell(record.label, config, corpus, features, load_forget_split(run_dir / record.artefacts["split"], corpus),
                   original.eval(), metadata, retrain.eval(), float(record.seconds), retrain_metadata)


def _original_of(retrain: RunRecord, originals: list[RunRecord]) -> RunRecord:
    same = ("task", "model", "seed", "corpus")
    return next(o for o in originals if all(o.config[key] == retrain.config[key] for key in same))


def mean_std(values: list[float]) -> str:
    """"mean ± sample std" at two decimals ("NA" for no values; std 0 for a single one)."""
    if not values:
        return "NA"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def describe_gap(gap: dict[str, Any]) -> str:
    """"Avg. Gap X pp (term g, ...)" from an evaluation report's gap_to_retrain."""
    terms = ", ".join(f"{key} {gap['gaps_pp'][key]:.1f}" for key in gap["avg_gap_terms"])
    return f"Avg. Gap {gap['avg_gap_pp']:5.2f} pp ({terms})"
