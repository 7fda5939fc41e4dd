"""The work of each stage of the grid, calling the lower layers by their public names.

Every stage function takes a `Job` and returns a `StageResult`; it runs in whatever process
the executor chose, reads its inputs from the artefacts of the runs it depends on, and writes
its own artefacts into RUN_DIR/<stage>/<key prefix>/ through `atomic_directory`, so the folder
appears complete or not at all. It never touches the results database.

- corpus:   load (build) the corpus, cache the features of every backbone; corpus.json.
- original: `train_original` on the training set; model/ checkpoint.
- retrain:  draw the split, the method `retrain` through `forgetting.apply` on the Original (its
            recipe on Dr from its starting point, for its epochs, or with retrain_match=steps its
            step count); split.json and model/ checkpoint.
- unlearn:  `forgetting.apply` (method, original, Df, Dr, budget=Retrain's wall time); model/ checkpoint.
- evaluate: `evaluate_unlearning` against the Retrain reference; report.json / report.md.
- tune:     unlearn + evaluate on a validation forget split (the validation set stands in for
            Dtest); returns the Avg. Gap to that split's Retrain, writes nothing but a summary.
- ensemble: one row of a split against its K Retrains (experiments/ensembles.py); summary.json.

A Retrain trains with its "init_seed" (never the Original's), an unlearned replica runs with its
"unlearn_seed"; without those keys both use the run's "seed", as every run did before replicas existed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..io import atomic_directory, atomic_write_json, read_json
from .ensembles import run_ensemble
from .executors import Job, StageResult
from .job_inputs import (
    CORPUS_FILE,
    FORGET_SPLIT_FILE,
    MODEL_FOLDER,
    SUMMARY_FILE,
    configure_process,
    draw_forget_split,
    forget_split_of,
    input_artefact,
    load_job_corpus,
    load_job_features,
    load_model,
    relative_path,
    summary_result,
    train_config_for,
)

# Metrics a tuning run needs for the Avg. Gap (accuracies and the MIA term).
TUNE_METRICS = ("accuracy", "svc_mia", "loss_mia")


# ---------------------------------------------------------------------------------------------
# Stages


def run_corpus(job: Job) -> StageResult:
    """Load (or build) the corpus and cache the features of every backbone of the grid."""
    configure_process(job)
    start = time.perf_counter()
    corpus = load_job_corpus(job)
    specs = {}
    for model_name in job.config["models"]:
        _, spec = load_job_features(job, corpus, model_name)
        specs[model_name] = dataclasses.asdict(spec)
    seconds = time.perf_counter() - start
    summary = {
        "name": corpus.name,
        "task": corpus.task,
        "fingerprint": corpus.fingerprint,
        "num_classes": corpus.num_classes,
        "label_names": list(corpus.label_names),
        "sizes": {split: int(len(corpus.indices(split))) for split in ("train", "validation", "test")},
        "speakers": int(len(set(corpus.speakers.tolist()))),
        "feature_specs": specs,
    }
    with atomic_directory(job.folder) as folder:
        atomic_write_json(folder / CORPUS_FILE, summary)
    return StageResult(metrics=summary, artefacts={"corpus": relative_path(job, Path(job.folder) / CORPUS_FILE)},
                       seconds=seconds)


def _save_trained(job: Job, corpus, model, config, metrics, result, forget_split=None) -> StageResult:
    """Save a trained Original or Retrain (checkpoint, and the split a Retrain was trained without)."""
    from ..data.splits import save_forget_split
    from ..models.checkpoint import save_checkpoint
    from ..training.recipes import checkpoint_metadata

    _, spec = load_job_features(job, corpus, job.config["model"])
    metadata = checkpoint_metadata(corpus, spec, model, config, metrics, split=forget_split,
                                   corpus_spec=job.config["corpus"], train_result=result)
    artefacts = {"checkpoint": MODEL_FOLDER}
    with atomic_directory(job.folder) as folder:
        save_checkpoint(folder / MODEL_FOLDER, model.cpu(), metadata)
        if forget_split is not None:
            save_forget_split(forget_split, folder / FORGET_SPLIT_FILE)
            artefacts["split"] = FORGET_SPLIT_FILE
    metrics = {**metrics, "train_seed": int(config.seed), "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
               "budget_exhausted": result.budget_exhausted}
    if forget_split is not None:
        metrics["n_forget"] = int(len(forget_split.forget_ids))
        metrics["forget"] = dict(forget_split.params)
    paths = {name: relative_path(job, Path(job.folder) / rel) for name, rel in artefacts.items()}
    return StageResult(metrics=metrics, artefacts=paths, seconds=float(result.seconds))


def run_original(job: Job) -> StageResult:
    """Train the original model of (task, corpus, backbone, seed)."""
    from ..training.recipes import train_original

    configure_process(job)
    corpus = load_job_corpus(job)
    config = train_config_for(job)
    model, result, metrics = train_original(
        corpus, job.config["model"], config.seed, job.cache_dir, config, progress=False,
        model_options=job.config.get("model_options") or {},
    )  # fmt: skip
    return _save_trained(job, corpus, model, config, metrics, result)


def run_retrain(job: Job) -> StageResult:
    """Draw the split and train its Retrain: the method `retrain` applied through `forgetting`, as
    `forget --verify-retrain` does (one Retrain: from the Original's starting point, with its recipe,
    on Dr, with the run's own seed, no time cap); its wall time is the other methods' budget."""
    from ..forgetting.apply import MethodSpec
    from ..forgetting.deletion import unlearn_benchmark_forget_split
    from ..training.recipes import trained_model_metrics

    configure_process(job)
    corpus = load_job_corpus(job)
    forget_split = draw_forget_split(corpus, job.config["split"])
    original, metadata = load_model(input_artefact(job, job.config["original"], "checkpoint"), job.extra.get("device"))
    features, _ = load_job_features(job, corpus, job.config["model"])
    retrain = MethodSpec.parse("retrain", {"match": job.config["train"].get("match", "epochs")})
    applied = unlearn_benchmark_forget_split(original, metadata, corpus, features, forget_split, retrain,
                                             seed=train_config_for(job).seed)
    model, training = applied.result.model, applied.result.training
    metrics = trained_model_metrics(model, features, corpus, applied.retain, training.recipe, training.result)
    return _save_trained(job, corpus, model, training.recipe, metrics, training.result, forget_split)


def _unlearn(job: Job, corpus, forget_split, overrides: Mapping[str, Any]):
    """Apply the run's method to the original model through `forgetting.apply`; returns
    (Applied, original metadata)."""
    from ..forgetting.apply import MethodSpec
    from ..forgetting.deletion import unlearn_benchmark_forget_split
    from .plan import load_methods

    load_methods()
    original, metadata = load_model(input_artefact(job, job.config["original"], "checkpoint"),
                                      job.extra.get("device"))
    features, _ = load_job_features(job, corpus, job.config["model"])
    applied = unlearn_benchmark_forget_split(
        original, metadata, corpus, features, forget_split, MethodSpec.parse(job.config["method"], dict(overrides)),
        seed=int(job.config.get("unlearn_seed", job.config["seed"])),
        budget_seconds=job.extra.get("budget_seconds"), budget_steps=job.extra.get("budget_steps"),
    )  # fmt: skip
    return applied, metadata


def run_unlearn(job: Job) -> StageResult:
    """Unlearn Df from the original model within the Retrain-derived time budget; save the model."""
    from ..forgetting.deletion import benchmark_metadata
    from ..models.checkpoint import save_checkpoint

    configure_process(job)
    corpus = load_job_corpus(job)
    forget_split = forget_split_of(job, corpus)
    hyper = job.config.get("hyper", {})
    # A tuned run takes the hyper-parameters the driver chose on the validation split.
    overrides = job.extra["overrides"] if "tuned" in hyper else hyper.get("overrides", {})
    applied, metadata = _unlearn(job, corpus, forget_split, overrides)
    result = applied.result
    summary = {**result.to_metadata(), "budget_seconds": job.extra.get("budget_seconds")}
    if job.extra.get("budget_steps") is not None:
        summary["budget_steps"] = job.extra["budget_steps"]
    metadata = benchmark_metadata(metadata, corpus, forget_split, applied, metadata.get("weights_sha256"))
    with atomic_directory(job.folder) as folder:
        save_checkpoint(folder / MODEL_FOLDER, result.model.cpu(), metadata)
        atomic_write_json(folder / SUMMARY_FILE, {**summary, "log": result.log})
    artefacts = {"checkpoint": relative_path(job, Path(job.folder) / MODEL_FOLDER),
                 "summary": relative_path(job, Path(job.folder) / SUMMARY_FILE)}
    return StageResult(metrics=summary, artefacts=artefacts, seconds=float(result.seconds))


def _metric_names(options: Mapping[str, Any]) -> list[str]:
    from ..evaluation import metric_names

    skip = set()
    if not options.get("relearn_attack", True):
        skip.add("relearn")
    if not options.get("representation_probe", True):
        skip.add("probe")
    return [name for name in metric_names() if name not in skip]


def summarise_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The database's metrics JSON of an evaluation: the scored model's metric table, the gap to
    Retrain, the split summary and the MIA directions (what value means forgotten)."""
    gap = report.get("gap_to_retrain") or {}
    return {
        "metrics": report["models"]["unlearned"],
        "avg_gap_pp": gap.get("avg_gap_pp"),
        "avg_gap_terms": gap.get("avg_gap_terms", []),
        "gaps_pp": gap.get("gaps_pp", {}),
        "split": report["split"],
        "directions": {name: text["forgotten_when"] for name, text in report["directions"].items()},
        "skipped": report.get("skipped", {}),
        **({"no_op": report["no_op"]} if "no_op" in report else {}),
    }


def _unchanged(model, job: Job, device: str | None) -> bool:
    """Whether `model` is the cell's Original unchanged (weights and buffers, byte for byte): a
    method that returns it is a no-op, not a win."""
    from ..evaluation import is_no_op

    original, _ = load_model(input_artefact(job, job.config["original"], "checkpoint"), device)
    return is_no_op(model, original)


def run_evaluate(job: Job) -> StageResult:
    """Score one model (Original, Retrain or unlearned) on the cell's split against the Retrain."""
    from ..evaluation import evaluate_unlearning, gap_to_retrain, write_report

    configure_process(job)
    corpus = load_job_corpus(job)
    forget_split = forget_split_of(job, corpus)
    features, _ = load_job_features(job, corpus, job.config["model"])
    device = job.extra.get("device")
    subject = job.config["subject"]
    model, _ = load_model(input_artefact(job, subject, "checkpoint"), device)
    retrain_seconds = job.input(job.config["retrain"])["seconds"]
    names = _metric_names(job.config.get("options", {}))
    common = dict(metrics=names, seed=int(job.config["seed"]), progress=False, retrain_seconds=retrain_seconds)
    start = time.perf_counter()
    if subject == job.config["retrain"]:
        report = evaluate_unlearning(model, features, corpus, forget_split, unlearn_seconds=retrain_seconds, **common)
        report["gap_to_retrain"] = gap_to_retrain(report["models"]["unlearned"], report["models"]["unlearned"])
    else:
        reference, _ = load_model(input_artefact(job, job.config["retrain"], "checkpoint"), device)
        cache = {f"retrained/{name}": values
                 for name, values in job.input(job.config["reference_eval"])["metrics"]["metrics"].items()}
        # A Retrain replica's time is its training time, like the first Retrain's; the Original has none.
        stage = job.input(subject)["stage"]
        unlearn_seconds = job.input(subject)["seconds"] if stage in ("unlearn", "retrain") else None
        report = evaluate_unlearning(model, features, corpus, forget_split, reference=reference, cache=cache,
                                     unlearn_seconds=unlearn_seconds, **common)
        if stage == "unlearn":
            report["no_op"] = _unchanged(model, job, device)
    seconds = time.perf_counter() - start
    with atomic_directory(job.folder) as folder:
        write_report(folder, report)
    artefacts = {"report": relative_path(job, Path(job.folder) / "report.json"),
                 "report_md": relative_path(job, Path(job.folder) / "report.md")}
    return StageResult(metrics=summarise_report(read_json(Path(job.folder) / "report.json")),
                       artefacts=artefacts, seconds=seconds)


class ValidationAsTest:
    """A split whose "test" set is the corpus's validation set: tuning never looks at Dtest."""

    def __init__(self, forget_split):
        self._forget_split = forget_split

    def __getattr__(self, name: str) -> Any:
        return getattr(self._forget_split, name)

    def test_indices(self, corpus) -> np.ndarray:
        return self._forget_split.validation_indices(corpus)


def scaled_overrides(method: str, base: Mapping[str, Any], point: Mapping[str, float]) -> dict[str, Any]:
    """The method's lr and epochs (defaults, then `base` overrides) scaled by a tuning grid point."""
    from ..config import from_mapping
    from ..methods.base import split_method_name

    method_class, _ = split_method_name(method)
    known = {f.name for f in dataclasses.fields(method_class.config_class)}
    config = from_mapping(method_class.config_class, {k: v for k, v in base.items() if k in known}, where=method)
    overrides = dict(base)
    if "lr" in known:
        overrides["lr"] = float(f"{float(config.lr) * float(point['lr_scale']):.6g}")  # no 3.0000000000000004e-4
    if "epochs" in known:
        overrides["epochs"] = max(1, int(round(int(config.epochs) * float(point["epoch_scale"]))))
    return overrides


def run_tune(job: Job) -> StageResult:
    """One tuning grid point: unlearn on the validation forget split, Avg. Gap to its Retrain."""
    from ..evaluation import evaluate_unlearning
    from .plan import load_methods

    configure_process(job)
    load_methods()
    corpus = load_job_corpus(job)
    forget_split = forget_split_of(job, corpus)
    overrides = scaled_overrides(job.config["method"], job.config.get("overrides", {}), job.config["point"])
    applied, _ = _unlearn(job, corpus, forget_split, overrides)
    result = applied.result
    features, _ = load_job_features(job, corpus, job.config["model"])
    reference, _ = load_model(input_artefact(job, job.config["retrain"], "checkpoint"), job.extra.get("device"))
    report = evaluate_unlearning(result.model, features, corpus, ValidationAsTest(forget_split), reference=reference,
                                 metrics=TUNE_METRICS, seed=int(job.config["seed"]), progress=False)
    gap = report["gap_to_retrain"] or {}
    summary = {"avg_gap": gap.get("avg_gap_pp"), "gaps_pp": gap.get("gaps_pp", {}), "overrides": overrides,
               "unlearn_seconds": result.seconds, "budget_exhausted": result.budget_exhausted,
               "no_op": not applied.weights_changed, "test_stand_in": "validation"}
    return summary_result(job, summary, float(result.seconds))


STAGE_FUNCTIONS = {
    "corpus": run_corpus,
    "original": run_original,
    "retrain": run_retrain,
    "tune": run_tune,
    "unlearn": run_unlearn,
    "evaluate": run_evaluate,
    "ensemble": run_ensemble,
}
