"""`evaluate_unlearning`: run the registered metrics on the unlearned (and reference) models and
assemble the report; `write_report` saves it as report.json (versioned) and report.md.

Report layout (schema_version 1):
- corpus {name, task, fingerprint, num_classes}; split {kind, sizes, forgotten classes/speakers};
  seed; settings (attack sizes and budgets); metrics (names run);
- models {role: {metric: {key: value}}} for the roles "unlearned", "original", "retrained";
- skipped {"role/metric": reason} for metrics that do not apply;
- directions {metric: {"summary", "forgotten_when", "retrained": {key: value} | None}};
- gap_to_retrain (None without a retrained model): gaps_pp, avg_gap_pp, avg_gap_terms;
- notes: sentences a reader needs (the retrain target, the non-member set used, fold counts).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from torch import nn
from tqdm import tqdm

from .. import __version__
from ..data.corpus import Corpus
from ..io import atomic_write_json, atomic_write_text
from .gap import gap_to_retrain
from .metrics import METRICS, ROLES, EvalContext, EvalSettings, Metric, MetricSkipped, probe_groups

SCHEMA_VERSION = 1
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


def _selected_metrics(names: Iterable[str] | None) -> list[Metric]:
    """The metrics to run, in registry order; an unknown name raises listing the valid ones."""
    if names is None:
        return [METRICS.get(name) for name in METRICS.names()]
    chosen = [METRICS.get(name) for name in dict.fromkeys(names)]  # UnknownNameError for a typo
    if not chosen:
        raise ValueError(f"no metric selected; valid names: {', '.join(METRICS.names())}")
    return sorted(chosen, key=lambda metric: METRICS.names().index(metric.name))


def evaluate_unlearning(
    model: nn.Module,
    features: np.ndarray,
    corpus: Corpus,
    forget_split,
    *,
    original: nn.Module | None = None,
    reference: nn.Module | None = None,
    unlearn_seconds: float | None = None,
    retrain_seconds: float | None = None,
    metrics: Iterable[str] | None = None,
    seed: int = 0,
    cache: dict | None = None,
    settings: EvalSettings | None = None,
    progress: bool = True,
) -> dict:
    """Score `model` (the unlearned model) on `forget_split` of `corpus`; return the report dict.

    `features` (N, ...) are aligned with `corpus.utterances`. `original` (the model before
    unlearning) and `reference` (retrained on Dr with the same split) are scored with the same
    metrics and seeds when given; `reference` also yields the gap to retrain. `metrics` are
    metric names (default: all registered). `cache`, when given, maps "role/metric" to results
    already computed: those are reused and new ones are added, so a caller can persist it and
    resume. It must belong to this exact (models, split, seed, settings) combination.
    """
    selected = _selected_metrics(metrics)
    models = {"unlearned": model, "original": original, "retrained": reference}
    context = EvalContext(
        features=features,
        corpus=corpus,
        forget_split=forget_split,
        models={role: m for role, m in models.items() if m is not None},
        seed=seed,
        settings=settings or EvalSettings(),
        unlearn_seconds=unlearn_seconds,
        retrain_seconds=retrain_seconds,
    )
    results, skipped = _run_metrics(context, selected, cache if cache is not None else {}, progress)
    return _assemble(context, selected, results, skipped)


def _run_metrics(
    context: EvalContext, selected: list[Metric], cache: dict, progress: bool
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, str]]:
    """Compute (or reuse from `cache`) every selected metric for every model role present."""
    jobs = [(role, metric) for role in context.models for metric in selected if role in metric.roles]
    results: dict[str, dict[str, dict[str, float]]] = {role: {} for role in context.models}
    skipped: dict[str, str] = {}
    for role, metric in tqdm(jobs, desc="evaluate", unit="metric", file=sys.stderr, disable=not progress):
        key = f"{role}/{metric.name}"
        if key not in cache:
            try:
                cache[key] = metric.compute(context, role)
            except MetricSkipped as reason:
                skipped[key] = str(reason)
                continue
        results[role][metric.name] = dict(cache[key])
    return results, skipped


def _split_summary(context: EvalContext) -> dict[str, Any]:
    forget_split = context.forget_split
    summary = {
        "kind": forget_split.kind,
        "n_forget": len(context.view("forget")),
        "n_retain": len(context.view("retain")),
        "n_test": len(context.view("test")),
        "params": dict(getattr(forget_split, "params", {}) or {}),
    }
    if forget_split.kind == "class":
        summary["forgotten_classes"] = [context.corpus.label_names[label] for label in context.forgotten_labels()]
    if forget_split.kind == "speaker":
        summary["forgotten_speakers"] = context.forgotten_speakers()
    return summary


def _directions(selected: list[Metric], results: dict) -> dict[str, dict]:
    """Per metric: what it measures, what value means forgotten, what the retrained model scores."""
    retrained = results.get("retrained")
    directions = {}
    for metric in selected:
        target = None
        if retrained is not None and metric.name in retrained:
            target = {key: value for key, value in retrained[metric.name].items() if key in metric.headline}
        directions[metric.name] = {"summary": metric.summary, "forgotten_when": metric.direction, "retrained": target}
    return directions


def _notes(context: EvalContext, selected: list[Metric], results: dict, skipped: dict) -> list[str]:
    """Sentences that change how the numbers are read."""
    names = {metric.name for metric in selected}
    notes = []
    if not context.forgotten_labels() and not (context.forget_split.kind == "speaker" and context.corpus.task == "sid"):
        notes.append(
            f"{context.forget_split.kind.capitalize()} unlearning keeps every label: the target Df accuracy is the "
            "retrained model's Df accuracy (about its test accuracy), not 0; gaps are measured to the retrained model."
        )
    if "retrained" not in context.models:
        notes.append("No retrained model was given: no gap to retrain; read the MIA numbers by their direction only.")
    if names & {"loss_mia"}:
        _, described = context.test_mask_like_forget()
        notes.append(f"Loss MIA non-members: {described}.")
    if names & {"svc_mia"}:
        notes.append(f"SVC MIA shadow non-members: {context.test_mask_without_forgotten()[1]}.")
        folds = results.get("unlearned", {}).get("loss_mia", {}).get("n_folds")
        if folds is not None and folds < context.settings.loss_mia_folds:
            notes.append(
                f"Loss MIA used {int(folds)} folds instead of {context.settings.loss_mia_folds}: "
                "the balanced groups are smaller than the fold count."
            )
    if names & {"probe"}:
        notes.append(f"Probe groups: {probe_groups(context)[2]}.")
    if names & {"relearn"}:
        relearn = context.settings.relearn
        notes.append(
            f"Relearning attack: {relearn.steps} {relearn.optimizer} steps, lr {relearn.lr}, "
            f"batch {relearn.batch_size}, "
            f"on {relearn.fraction:.0%} of Df plus {relearn.retain_per_forget:g} retain row(s) per attacked Df row, "
            "model in eval mode (frozen batch-norm statistics and dropout); held-out Df accuracy 'early' after "
            f"{relearn.early_at} steps and 'after' at the end ({relearn.steps} steps)."
        )
    ratio = results.get("unlearned", {}).get("time", {}).get("ratio")
    if ratio is not None and ratio > 1:
        notes.append(f"Unlearning took {ratio:.2f}x the retraining time: retraining would have been cheaper.")
    notes.extend(f"Skipped {key}: {reason}" for key, reason in sorted(skipped.items()))
    return notes


def _assemble(context: EvalContext, selected: list[Metric], results: dict, skipped: dict) -> dict:
    gap = None
    if "retrained" in results:
        compared = {metric.name for metric in selected if metric.compared_to_retrain}
        gap = gap_to_retrain(results["unlearned"], results["retrained"], compared)
    return {
        "schema_version": SCHEMA_VERSION,
        "package_version": __version__,
        "corpus": {
            "name": context.corpus.name,
            "task": context.corpus.task,
            "fingerprint": context.corpus.fingerprint,
            "num_classes": context.corpus.num_classes,
        },
        "split": _split_summary(context),
        "seed": context.seed,
        "settings": context.settings.to_dict(),
        "metrics": [metric.name for metric in selected],
        "models": results,
        "skipped": skipped,
        "directions": _directions(selected, results),
        "gap_to_retrain": gap,
        "notes": _notes(context, selected, results, skipped),
    }


# ---------------------------------------------------------------------------------------------
# Writing and printing


def _json_safe(value: Any) -> Any:
    """NaN / infinity become None (JSON has no spelling for them); containers are walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _format_value(value: float | None, key: str) -> str:
    if value is None:
        return "-"
    if key.startswith("n_"):
        return f"{value:.0f}"
    if key.endswith("seconds") or key in ("ratio", "speedup"):
        return f"{value:.3g}"
    return f"{value:.4f}"


ROLE_HEADINGS = {"unlearned": "unlearned", "original": "original", "retrained": "retrained (target)"}


def _table(report: dict, headline_only: bool) -> list[list[str]]:
    """Header and rows: metric.key, one column per model present, and the gap in pp with a reference."""
    models = report["models"]
    roles = [role for role in ROLES if role in models]
    gap = report.get("gap_to_retrain")
    gaps = (gap or {}).get("gaps_pp", {})
    table = [["metric", *(ROLE_HEADINGS[role] for role in roles), *(["gap (pp)"] if gap else [])]]
    for name in report["metrics"]:
        keys: list[str] = []
        for role in roles:
            keys += [key for key in models[role].get(name, {}) if key not in keys]
        if headline_only and name in METRICS:
            keys = [key for key in METRICS.get(name).headline if key in keys]
        for key in keys:
            row = [f"{name}.{key}", *(_format_value(models[role].get(name, {}).get(key), key) for role in roles)]
            if gap:
                row.append("-" if f"{name}.{key}" not in gaps else f"{gaps[f'{name}.{key}']:.2f}")
            table.append(row)
    return table


def _avg_gap_line(report: dict) -> str | None:
    gap = report.get("gap_to_retrain")
    if not gap or gap.get("avg_gap_pp") is None:
        return None
    return f"Avg. Gap to retrain: {gap['avg_gap_pp']:.2f} pp over {', '.join(gap['avg_gap_terms'])}"


def format_summary(report: dict) -> str:
    """A short fixed-width table of the headline numbers, for the terminal, then how to read them."""
    table = _table(report, headline_only=True)
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    extra = [line for line in (_avg_gap_line(report),) if line]
    scored = {name for results in report["models"].values() for name in results}
    extra += [
        f"{name}: {text['forgotten_when']}"
        for name, text in report["directions"].items()
        if name != "accuracy" and name in scored
    ]
    return "\n".join(lines + [""] + extra)


def format_markdown(report: dict) -> str:
    """The readable report: context, the full metric table, directions, Avg. Gap and notes."""
    forget_split, corpus = report["split"], report["corpus"]
    lines = [
        "# Unlearning evaluation",
        "",
        f"- corpus: `{corpus['name']}` ({corpus['task']}, {corpus['num_classes']} classes, "
        f"fingerprint `{corpus['fingerprint']}`)",
        f"- split: {forget_split['kind']}; |Df| = {forget_split['n_forget']}, |Dr| = {forget_split['n_retain']}, "
        f"|Dtest| = {forget_split['n_test']}",
    ]
    for key in ("forgotten_classes", "forgotten_speakers"):
        if forget_split.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {', '.join(map(str, forget_split[key]))}")
    lines += [f"- seed: {report['seed']}; schema version {report['schema_version']}", ""]
    header, *rows = _table(report, headline_only=False)
    lines += ["## Metrics", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    avg_gap = _avg_gap_line(report)
    lines += ["", avg_gap] if avg_gap else []
    lines += ["", "## How to read each metric", ""]
    for name, text in report["directions"].items():
        target = text["retrained"]
        scores = ", ".join(f"{key} = {_format_value(value, key)}" for key, value in (target or {}).items())
        target_text = f" Retrained model: {scores}." if scores else ""
        lines.append(f"- **{name}**: {text['summary']}. Reading: {text['forgotten_when']}.{target_text}")
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def write_report(folder: str | Path, report: dict) -> tuple[Path, Path]:
    """Write `folder`/report.json and `folder`/report.md atomically; return both paths."""
    folder = Path(folder)
    safe = _json_safe(report)
    json_path, md_path = folder / REPORT_JSON, folder / REPORT_MD
    atomic_write_json(json_path, safe)
    atomic_write_text(md_path, format_markdown(safe))
    return json_path, md_path
