"""Time estimates for a plan: a per-model cost table, refined by timings already measured.

The table gives seconds per 1,000 one-second training examples per epoch on the device each
backbone is meant for (the small models: wall time on two CPU cores; the transformers on one
modern GPU, rough guesses). A small model built narrower or wider than its default
(`model_options`, e.g. the demo's `channels: 16`) is scaled by its parameter count against the
default's, to the power its family's measured cost follows (WIDTH_EXPONENTS). Corpus sizes come
from a count of a Speech Commands folder's clips, else from NOMINAL_SIZES. They are rough orders
of magnitude, good for "minutes or days?", not for scheduling. As soon as the
results database holds finished runs of the same (stage, task, model), their mean wall time
replaces the table's guess for the remaining runs of that kind.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .plan import STAGES, Plan, Run

# Seconds per 1,000 examples per training epoch (forward + backward).
TRAIN_SECONDS_PER_1K: dict[str, float] = {
    "kws-resnet": 3.6,  # 9.3 s per epoch of 2,594 Speech Commands clips, two threads
    "kws-tcresnet": 0.7,  # 32 s for 18 epochs of the same clips, one thread beside a second job
    "sid-xvector": 12.0,
    "tiny-whisper": 1.5,
    "tiny-wav2vec2": 1.5,
    "tiny-hubert": 1.5,
    "whisper-tiny": 4.0,
    "whisper-base": 8.0,
    "wav2vec2-base": 12.0,
    "wav2vec2-large": 35.0,
    "hubert-base": 12.0,
    "hubert-large": 35.0,
    "hubert-xlarge": 80.0,
}
DEFAULT_TRAIN_SECONDS_PER_1K = 10.0
# Inference is about a third of a training step.
INFERENCE_FRACTION = 0.35
FEATURE_SECONDS_PER_1K = 4.0  # decoding + log-mel of 1,000 one-second clips
DEFAULT_EPOCHS = 10

# Approximate (training, total) utterance counts per corpus, used before a corpus is loaded.
NOMINAL_SIZES: dict[tuple[str, str], tuple[int, int]] = {
    ("embedded", "kws"): (2_455, 3_273),
    ("embedded", "sid"): (1_080, 1_440),
    ("fsdd", "kws"): (2_700, 3_000),
    ("fsdd", "sid"): (2_700, 3_000),
    ("superb", "kws"): (51_000, 61_000),
    ("superb", "sid"): (138_361, 153_516),
}


@dataclass(frozen=True)
class Estimate:
    """Estimated seconds per stage for the runs still to do, and where the numbers came from."""

    seconds: dict[str, float]
    measured_stages: tuple[str, ...]

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def _epochs(run: Run) -> int:
    configured = run.config.get("train", {}).get("epochs")
    if configured:
        return int(configured)
    try:
        from ..training.recipes import default_train_config

        recipe = run.config.get("train", {}).get("recipe", "early-stop")
        return int(default_train_config(run.config["task"], run.config["model"], recipe).epochs)
    except Exception:  # the recipe may need data or names this estimate does not have
        return DEFAULT_EPOCHS


# Families whose cost follows their parameter count and that build in milliseconds on a CPU: cost
# = table cost x (parameters / default's parameters) ** exponent. The TDNN's frame layers keep the
# cores busy at any width (narrow x-vector: 0.27 of the parameters, about 0.2-0.3 of the time);
# the small CNN is overhead-bound when narrow (kws-resnet at 16 / 32 / 45 channels: 0.13 / 0.51 / 1
# of the parameters, about 1.9 / 2.9 / 3.6 s per 1,000 clips per epoch).
WIDTH_EXPONENTS: dict[str, float] = {"cnn": 1 / 3, "tcn": 1 / 3, "tdnn": 1.0}


@functools.lru_cache(maxsize=None)
def _width_factor(model: str, options_json: str) -> float:
    """Parameters of `model` built with these options / with its defaults (1 for other families)."""
    from ..models.registry import create_model, model_info

    options = json.loads(options_json)
    exponent = WIDTH_EXPONENTS.get(model_info(model).family)
    if not options or exponent is None:
        return 1.0

    def count(**kwargs) -> int:
        return sum(p.numel() for p in create_model(model, 10, **kwargs).parameters())

    return (count(**options) / count()) ** exponent


def _seconds_per_1k(run: Run) -> float:
    """The table's training cost of the run's backbone, scaled to its configured width."""
    model = run.config["model"]
    options = json.dumps(run.config.get("model_options") or {}, sort_keys=True)
    return TRAIN_SECONDS_PER_1K.get(model, DEFAULT_TRAIN_SECONDS_PER_1K) * _width_factor(model, options)


def _train_seconds(run: Run, sizes: tuple[int, int]) -> float:
    per_1k = _seconds_per_1k(run)
    seconds = _epochs(run) * sizes[0] / 1000 * per_1k
    cap = run.config.get("train", {}).get("max_seconds")
    return min(seconds, cap) if cap else seconds


def _forget_fraction(split: Mapping) -> float:
    return split["ratio"] if split["scenario"] == "sample" else 0.1


# Share of a Speech Commands folder's clips that a task trains on (the mini corpus: 0.70 for
# keywords, 0.43 for speakers, as only speakers with 20 or more clips are kept).
SPEECH_COMMANDS_TRAIN_SHARE = 0.7


@functools.lru_cache(maxsize=8)
def _speech_commands_sizes(folder: str) -> tuple[int, int] | None:
    """(training, total) clips of a Speech Commands folder from a count of its keyword folders'
    .wav files (no audio is read); None when the folder is missing or empty."""
    from ..data.speech_commands_layout import NOISE_FOLDER

    root = Path(folder)
    if not root.is_dir():
        return None
    clips = sum(1 for sub in root.iterdir() if sub.is_dir() and sub.name != NOISE_FOLDER for _ in sub.glob("*.wav"))
    return (int(clips * SPEECH_COMMANDS_TRAIN_SHARE), clips) if clips else None


def _corpus_sizes(plan: Plan, task: str) -> tuple[int, int]:
    """Approximate (training, total) utterances of `task`'s corpus, before it is loaded."""
    folder = plan.config.data_path(task) if plan.config.data == "speech-commands" else None
    counted = _speech_commands_sizes(folder) if folder else None
    return counted or NOMINAL_SIZES.get((plan.config.data, task), (10_000, 12_000))


def table_estimate(run: Run, plan: Plan) -> float:
    """Seconds for `run` from the cost table alone."""
    sizes = _corpus_sizes(plan, run.config["task"])
    if run.stage == "corpus":
        return sizes[1] / 1000 * FEATURE_SECONDS_PER_1K * len(run.config["models"])
    if run.stage == "original":
        return _train_seconds(run, sizes)
    retrain_seconds = _train_seconds(run, sizes) * (1 - _forget_fraction(run.config["split"]))
    if run.stage == "retrain":
        return retrain_seconds
    budget = run.config.get("budget", {})
    unlearn_seconds = retrain_seconds * budget.get("factor", 1.0)
    if budget.get("cap_seconds"):
        unlearn_seconds = min(unlearn_seconds, budget["cap_seconds"])
    per_1k = _seconds_per_1k(run)
    options = run.config.get("options", {})
    # One forward pass over the corpus (Df, Dr, Dtest); the relearning attack about doubles it
    # (a few training steps, then Df again), the probe adds embeddings of a few groups.
    passes = 1.0 + 1.0 * bool(options.get("relearn_attack")) + 0.3 * bool(options.get("representation_probe"))
    evaluate_seconds = passes * sizes[1] / 1000 * per_1k * INFERENCE_FRACTION
    if run.stage == "unlearn":
        return unlearn_seconds
    if run.stage == "ensemble":
        return _ensemble_seconds(run, sizes, per_1k)
    if run.stage == "tune":
        return unlearn_seconds + evaluate_seconds
    return evaluate_seconds


# The informed attack fits one small classifier per held-out seed over every (model, Df example) row.
ENSEMBLE_FIXED_SECONDS = 5.0


def _ensemble_seconds(run: Run, sizes: tuple[int, int], per_1k: float) -> float:
    """Forward passes of every model of the row on Df, plus the attacks' fits."""
    models = len(run.config["subjects"]) + len(run.config["retrains"])
    forget_rows = sizes[0] * _forget_fraction(run.config["split"])
    return models * forget_rows / 1000 * per_1k * INFERENCE_FRACTION + ENSEMBLE_FIXED_SECONDS


def _measure_key(run_config: Mapping) -> tuple:
    return (run_config.get("stage"), run_config.get("task"), run_config.get("model"))


def estimate_plan(plan: Plan, finished: Mapping[str, Mapping] | None = None) -> Estimate:
    """Seconds still to spend per stage (runs in `finished` cost nothing).

    `finished` maps run keys to {"config": ..., "seconds": wall seconds} of done runs (from the
    results database); their mean per (stage, task, model) replaces the table's figure.
    """
    finished = dict(finished or {})
    measured: dict[tuple, list[float]] = defaultdict(list)
    for row in finished.values():
        if row.get("seconds") is not None:
            measured[_measure_key(row["config"])].append(float(row["seconds"]))
    seconds = {stage: 0.0 for stage in STAGES}
    measured_stages = set()
    for run in plan.runs:
        if run.key in finished:
            continue
        samples = measured.get(_measure_key(run.config))
        if samples:
            seconds[run.stage] += sum(samples) / len(samples)
            measured_stages.add(run.stage)
        else:
            seconds[run.stage] += table_estimate(run, plan)
    return Estimate(seconds, tuple(stage for stage in STAGES if stage in measured_stages))


def format_duration(seconds: float) -> str:
    """"45 s", "12 min", "3.4 h", "2.1 days"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def describe_plan(plan: Plan, estimate: Estimate, statuses: Mapping[str, str], run_dir: str, parallel: int = 1) -> str:
    """The plan as printed before anything runs: the grid, runs per stage, what is done, the estimate."""
    config = plan.config
    lines = [f"Plan: grid {config.name!r} in {run_dir}"]
    for task in config.tasks:
        corpus = plan.stage_runs("corpus")
        spec = next((run.config["corpus"] for run in corpus if run.config["task"] == task), "?")
        lines.append(f"  {task}: corpus {spec}; backbones {', '.join(config.models_for(task))}; "
                     f"scenarios {', '.join(config.scenarios_for(task))}")
    ratios = ", ".join(f"{r * 100:g}%" for r in config.ratios)
    lines.append(f"  forget ratios {ratios}; seeds {', '.join(map(str, config.seeds))}; "
                 f"class targets {config.class_count}, speaker targets {config.speaker_count}")
    lines.append(f"  methods ({len(plan.methods)}): {', '.join(plan.methods)}")
    if config.retrain_seeds > 1 or config.unlearn_seeds > 1:
        lines.append(f"  per forget split: {config.retrain_seeds} Retrain(s) (seeds other than the Original's), "
                     f"{config.unlearn_seeds} unlearned model(s) per method (own seeds); "
                     f"{len(plan.stage_runs('ensemble'))} ensemble rows")
    if config.tune:
        lines.append(f"  tuning: {len(plan.tune_groups)} groups x {len(plan.stage_runs('tune')) // max(1, len(plan.tune_groups))}"
                     " grid points on validation forget splits")
    if config.unlearn_cap_steps is not None:
        budget = f"{config.unlearn_cap_steps} optimiser steps (no time budget)"
    else:
        budget = f"{config.budget_factor:g} x Retrain wall time"
        if config.unlearn_cap_seconds:
            budget += f", capped at {config.unlearn_cap_seconds:g} s"
    lines.append(f"  unlearning budget: {budget}")
    header = f"  {'stage':<9} {'runs':>6} {'done':>6} {'failed':>6} {'to run':>7} {'estimate':>10}"
    lines += ["", header, "  " + "-" * (len(header) - 2)]
    total_runs = total_done = total_failed = 0
    for stage in STAGES:
        runs = plan.stage_runs(stage)
        done = sum(statuses.get(run.key) == "done" for run in runs)
        failed = sum(statuses.get(run.key) == "failed" for run in runs)
        total_runs, total_done, total_failed = total_runs + len(runs), total_done + done, total_failed + failed
        lines.append(f"  {stage:<9} {len(runs):>6} {done:>6} {failed:>6} {len(runs) - done - failed:>7} "
                     f"{format_duration(estimate.seconds[stage]):>10}")
    lines.append(f"  {'total':<9} {total_runs:>6} {total_done:>6} {total_failed:>6} "
                 f"{total_runs - total_done - total_failed:>7} {format_duration(estimate.total):>10}")
    source = "cost table"
    if estimate.measured_stages:
        source += f", refined by measured runs ({', '.join(estimate.measured_stages)})"
    lines += ["", f"Estimated time: {format_duration(estimate.total / max(1, parallel))} "
                  f"with {parallel} run(s) in parallel ({source}; failed runs are re-run only with --retry-failed)."]
    for note in plan.notes:
        lines.append(f"Data: {note}")
    if plan.notes:
        lines.append("The plan is valid, but the data path is required to run it.")
    return "\n".join(lines)
