"""The report's tuning section: what `--tune` chose for each method, how the choice scored on its
validation forget split against the method's own defaults, and how many grid points returned the
Original unchanged (no-ops, never chosen while another point changed the model)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..tuning import CRITERION
from .layout import display_name

DEFAULT_POINT = {"lr_scale": 1.0, "epoch_scale": 1.0}
TUNING_HEADER = ("Task", "Backbone", "Scenario", "Method", "Chosen", "Grid point (x lr, x epochs)",
                 "Validation Avg. Gap (pp)", "At the defaults (pp)", "No-op points")


def _settings(overrides: Mapping[str, Any]) -> str:
    """"lr 0.0003, 5 epochs" from a choice's overrides (only the keys the method has)."""
    parts = []
    if "lr" in overrides:
        parts.append(f"lr {overrides['lr']:g}")
    if "epochs" in overrides:
        parts.append(f"{overrides['epochs']} epoch{'' if overrides['epochs'] == 1 else 's'}")
    return ", ".join(parts) or "—"


def _gap(value: float | None) -> str:
    return "NA" if value is None else f"{value:.2f}"


def tuning_cells(row: Mapping[str, Any]) -> list[str]:
    """One table row of a stored tuning choice (`ResultStore.tuning_rows`)."""
    choice, candidates = row["choice"], row["provenance"].get("candidates", [])
    default = next((c for c in candidates if c.get("point") == DEFAULT_POINT), None)
    point = choice["point"]
    no_ops = sum(1 for c in candidates if c.get("no_op"))
    method = display_name(row["method"], bool(choice.get("no_op")))
    return [row["task"], row["model"], row["scenario"], method, _settings(choice.get("overrides", {})),
            f"x{point['lr_scale']:g}, x{point['epoch_scale']:g}", _gap(choice.get("avg_gap")),
            _gap(default.get("avg_gap") if default else None), f"{no_ops} of {len(candidates)}"]


def tuning_markdown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The report section; empty for a grid that did not tune."""
    if not rows:
        return []
    lines = ["## Tuning: each method's lr x epochs, chosen on validation forget splits", "",
             f"Criterion: {CRITERION}. The reported cells never use these splits. \"At the defaults\" is the "
             "grid point of the method's documented lr and epochs; a method marked as a no-op returned the "
             "Original unchanged at every point.", "",
             "| " + " | ".join(TUNING_HEADER) + " |", "|" + "---|" * len(TUNING_HEADER)]
    lines += ["| " + " | ".join(tuning_cells(row)) + " |" for row in rows]
    return lines + [""]
