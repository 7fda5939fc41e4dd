"""The report's PNG plots of one table (matplotlib, loaded only when a plot is drawn): forgetting
vs utility, metrics vs forget ratio, unlearning time vs Avg. Gap."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable, Sequence

from ...io import atomic_write_bytes
from .layout import COLUMN_BY_KEY, SCENARIO_TITLES, display_name, method_order
from .rows import Cell, EvalRow, Table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _mean(rows: Iterable[EvalRow], key: str) -> tuple[float | None, float | None]:
    cell = Cell.of(r.values[key] for r in rows)
    return cell.mean, (cell.std or 0.0)


def plot_forgetting_vs_utility(rows: Sequence[EvalRow], table: Table, folder: Path) -> list[Path]:
    """Per scenario: Dtest accuracy (utility) against Df accuracy (forgetting), Retrain marked."""
    plt = _pyplot()
    scenarios = [s for s in SCENARIO_TITLES if any(r.scenario == s for r in rows)]
    figure, axes = plt.subplots(1, len(scenarios), figsize=(5.4 * len(scenarios), 4.6), squeeze=False,
                                constrained_layout=True)
    for axis, scenario in zip(axes[0], scenarios):
        chosen = [r for r in rows if r.scenario == scenario]
        for method in method_order(r.method for r in chosen):
            mine = [r for r in chosen if r.method == method]
            (x, dx), (y, dy) = _mean(mine, "test"), _mean(mine, "df")
            if x is None or y is None:
                continue
            style = {"retrain": dict(marker="*", s=260, color="black", zorder=5),
                     "original": dict(marker="s", s=80, color="grey", zorder=4)}.get(method, dict(marker="o", s=50))
            axis.errorbar(x, y, xerr=dx, yerr=dy, fmt="none", ecolor="lightgrey", zorder=1)
            axis.scatter([x], [y], label=display_name(method), **style)
        axis.set_xlabel("Dtest accuracy (%)  [utility, higher = better]")
        axis.set_ylabel("Df accuracy (%)  [target: Retrain]")
        axis.set_title(SCENARIO_TITLES[scenario])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="best")
    figure.suptitle(f"Forgetting vs utility — {table.title}")
    path = _save_png(figure, folder / f"{table.task}-{_slug(table.corpus)}-forgetting-vs-utility.png")
    plt.close(figure)
    return [path]


def plot_metrics_vs_ratio(rows: Sequence[EvalRow], table: Table, folder: Path) -> list[Path]:
    """Sample unlearning: each metric against the forget ratio, one line per method."""
    sample = [r for r in rows if r.scenario == "sample" and r.ratio is not None]
    if not sample:
        return []
    plt = _pyplot()
    keys = ("df", "dr", "test", "loss_mia", "svc_mia", "avg_gap")
    figure, axes = plt.subplots(2, 3, figsize=(14, 8), squeeze=False, constrained_layout=True)
    ratios = sorted({r.ratio for r in sample})
    for axis, key in zip(axes.flat, keys):
        for method in method_order(r.method for r in sample):
            points = [(ratio * 100, _mean([r for r in sample if r.method == method and r.ratio == ratio], key)[0])
                      for ratio in ratios]
            points = [(x, y) for x, y in points if y is not None]
            if not points:
                continue
            style = {"retrain": dict(color="black", linewidth=2.5, marker="*"),
                     "original": dict(color="grey", linestyle="--", marker="s")}.get(method, dict(marker="o"))
            axis.plot(*zip(*points), label=display_name(method), **style)
        axis.set_title(COLUMN_BY_KEY[key].title, fontsize=9)
        axis.set_xlabel("forget ratio (%)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"Metrics vs forget ratio (sample unlearning) — {table.title}")
    path = _save_png(figure, folder / f"{table.task}-{_slug(table.corpus)}-metrics-vs-ratio.png")
    plt.close(figure)
    return [path]


def plot_time_vs_gap(rows: Sequence[EvalRow], table: Table, folder: Path) -> list[Path]:
    """Unlearning time against Avg. Gap to Retrain, one point per (method, scenario)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.6), constrained_layout=True)
    markers = {"sample": "o", "class": "^", "speaker": "D"}
    for scenario in [s for s in SCENARIO_TITLES if any(r.scenario == s for r in rows)]:
        chosen = [r for r in rows if r.scenario == scenario and r.method != "original"]
        for method in method_order(r.method for r in chosen):
            mine = [r for r in chosen if r.method == method]
            (x, _), (y, _) = _mean(mine, "seconds"), _mean(mine, "avg_gap")
            if x is None or y is None:
                continue
            if method == "retrain":
                axis.scatter([x], [y], marker="*", s=260, color="black", zorder=5)
                axis.annotate(f"Retrain ({scenario})", (x, y), fontsize=7)
            else:
                axis.scatter([x], [y], marker=markers[scenario], s=45)
                axis.annotate(method, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("time (s, log scale)  [Retrain: training time]")
    axis.set_ylabel("Avg. Gap to Retrain (pp)  [lower = closer to Retrain]")
    axis.set_title(f"Time vs Avg. Gap — {table.title}\n(o sample, ^ class, D speaker)", fontsize=10)
    axis.grid(alpha=0.3)
    path = _save_png(figure, folder / f"{table.task}-{_slug(table.corpus)}-time-vs-gap.png")
    plt.close(figure)
    return [path]


def _slug(text: str) -> str:
    """A file-name-safe short form of a corpus spec ("fsdd:/data/fsdd" -> "fsdd")."""
    head = text.split(":")[0]
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in head) or "corpus"
