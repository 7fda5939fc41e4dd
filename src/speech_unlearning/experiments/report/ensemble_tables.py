"""The ensemble tables: a split's unlearned models against its K Retrains (experiments/ensembles.py),
pooled per method and scenario, with the Retrain-spread table and the notes on their sign conventions."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..plan import describe_forget_split
from ..store import ResultStore
from .layout import SCENARIO_TITLES, TASK_TITLES, Column, display_name, method_order, scenario_grouped_table, value_at
from .rows import Cell, RunLookup, variant_label


ENSEMBLE_COLUMNS: tuple[Column, ...] = (
    Column("forgetting_quality", "Forgetting quality F [higher = like Retrain]",
           ("scores", "forgetting_quality", "forgetting_quality"), 1.0, 3),
    Column("final_score", "Final score [F x utility ratios]", ("scores", "forgetting_quality", "final_score"), 1.0, 3),
    Column("ulira_auc", "U-LiRA AUC (%) [50 = like Retrain]", ("scores", "ulira", "auc"), 100.0),
    Column("ulira_tpr_1", "U-LiRA TPR @ 1 % FPR (%) [~1 = like Retrain]", ("scores", "ulira", "tpr_at_1pct_fpr"), 100.0),
    Column("ulira_tpr_01", "U-LiRA TPR @ 0.1 % FPR (%) [~0.1 = like Retrain]",
           ("scores", "ulira", "tpr_at_0_1pct_fpr"), 100.0, 2),
    Column("informed", "Informed attack bal. acc. (%) [50 = like Retrain]",
           ("scores", "informed_attack", "balanced_accuracy"), 100.0),
)
# Metrics of the Retrain-spread table, in this order when present (the headline count covers all).
SPREAD_KEYS = ("accuracy.df", "accuracy.dr", "accuracy.test", "accuracy.test_remaining", "loss_mia.accuracy",
               "svc_mia.confidence", "probe.balanced_accuracy", "relearn.early", "relearn.after")
ENSEMBLE_NOTES = (
    "Ensemble tables (retrain_seeds = K >= 2): every split has K Retrains trained on its Dr with seeds other than "
    "the Original's, every method K unlearned models with their own seeds (unlearn_seeds); column K gives "
    "unlearned / Retrain models. The Retrain row of the paper table then pools the K Retrains: its ± is the "
    "Retrain spread, its Avg. Gap each Retrain's gap to the split's first Retrain (0 for that one).",
    "Forgetting quality F (NeurIPS 2023 unlearning challenge): per forget example, the (eps, delta = 1e-5) that "
    "the best threshold rule on the logit-scaled confidence reaches between the K unlearned and the K Retrain "
    "models, bucketed; F in [0, 1], higher = more like Retrain. Two Retrain pools already score well below 1 "
    "at finite K (about 0.2 at K = 8), so read F against the Retrain-vs-Retrain row. Final score = F x (Dr "
    "accuracy / Retrain's) x (Dtest accuracy / Retrain's; the remaining classes' for class unlearning). Needs "
    "K >= 3 on both sides (NA otherwise).",
    "U-LiRA (Hayes et al. 2024), leave-one-seed-out: per-example Gaussians of that confidence under the other "
    "unlearned models and the other Retrains, a likelihood ratio per (model, example). AUC 50 % = the unlearned "
    "models cannot be told from Retrains, 100 % = always; TPR at 1 % / 0.1 % FPR is about the FPR itself for an "
    "attack with no power, higher = unlearned models caught at that false-alarm rate.",
    "Informed attack: a classifier on per-example loss, confidence, entropy and margin, trained on the other "
    "seeds' unlearned vs Retrain models and tested on the held-out seed; balanced accuracy 50 % = "
    "indistinguishable from Retrain, 100 % = every held-out model told apart.",
    "Indistinguishable from Retrain on N of M metrics: for every metric (the headline keys of the accuracies "
    "and of each attack; time left out), a two-sided test at the 95 % level against the split's Retrains: "
    "Welch's t-test for a row of >= 2 models, else the 95 % prediction interval of one more Retrain. 'in' "
    "means no difference was found, not that there is none: with few models the test has little power, and "
    "about 1 metric in 20 lands outside by chance. Counts are summed over splits.",
    "Retrain-vs-Retrain row: the first half of the Retrains against the second half (K/2 models each, K >= 4; "
    "the scores need K >= 6): the noise floor of every score. Original row: 'nothing measurable to forget' "
    "when the Original itself is inside the Retrain spread on every metric, so no method can show forgetting "
    "on that split. 'no-op': every unlearned model is byte-identical to the Original; it passes whatever the "
    "Original passes and is not a win.",
)


@dataclass(frozen=True)
class EnsembleEntry:
    """One finished ensemble run: its grid coordinates and its row (evaluation.retrain_ensemble)."""

    task: str
    corpus: str
    model: str
    seed: int
    scenario: str
    split: str
    method: str
    retrain_match: str
    row: Mapping[str, Any]


@dataclass
class EnsembleRow:
    """One method's ensemble entries of a scenario, pooled over splits."""

    scenario: str
    method: str
    entries: list[EnsembleEntry]
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def sizes(self) -> str:
        """"8/8" (unlearned / Retrain models), several when splits differ."""
        return ", ".join(sorted({f"{e.row['n_unlearned']}/{e.row['n_retrains']}" for e in self.entries}))

    @property
    def headline(self) -> str:
        inside = sum(e.row["spread"]["n_inside"] for e in self.entries)
        tested = sum(e.row["spread"]["n_tested"] for e in self.entries)
        splits = f" ({len(self.entries)} splits)" if len(self.entries) > 1 else ""
        return f"{inside} of {tested}{splits}"

    @property
    def verdict(self) -> str:
        """no-op / nothing measurable to forget (in every split, or in how many) / the headline."""
        count = len(self.entries)
        if all(e.row.get("no_op") for e in self.entries):
            return "no-op"
        nothing = sum(bool(e.row.get("nothing_to_forget")) for e in self.entries)
        if nothing:
            return "nothing measurable to forget" + ("" if nothing == count else f" in {nothing} of {count} splits")
        return f"indistinguishable from Retrain on {self.headline} metrics"


@dataclass
class EnsembleTable:
    """The ensemble rows of one (task, corpus, kind of Retrain)."""

    task: str
    corpus: str
    retrain_match: str
    rows: list[EnsembleRow] = field(default_factory=list)

    @property
    def title(self) -> str:
        against = "" if self.retrain_match == "epochs" else ", against step-matched Retrains"
        return f"{TASK_TITLES.get(self.task, self.task)} ({self.task}) on {self.corpus}{against}"


def collect_ensembles(store: ResultStore) -> list[EnsembleEntry]:
    """Every finished ensemble run of the database, its method named with its overrides."""
    lookup = RunLookup.of(store)
    entries = []
    for record in store.records(stage="ensemble", status="done"):
        config = record.config
        first = (config.get("subjects") or [None])[0]
        entries.append(EnsembleEntry(
            task=config["task"], corpus=config["corpus"], model=config["model"], seed=int(config["seed"]),
            scenario=config["split"]["scenario"], split=describe_forget_split(config["split"]),
            method=variant_label(config["method"], lookup.overrides.get(first, {})),
            retrain_match=lookup.retrain_kind_of(record), row=record.metrics or {},
        ))
    return entries


def aggregate_ensembles(entries: Sequence[EnsembleEntry]) -> list[EnsembleTable]:
    """One table per (task, corpus, kind of Retrain); rows Original, Retrain-vs-Retrain, then methods."""
    grouped: dict[tuple[str, str, str], list[EnsembleEntry]] = defaultdict(list)
    for entry in entries:
        grouped[(entry.task, entry.corpus, entry.retrain_match)].append(entry)
    tables = []
    for (task, corpus, match), members in sorted(grouped.items()):
        table = EnsembleTable(task, corpus, match)
        for scenario in [s for s in SCENARIO_TITLES if any(e.scenario == s for e in members)]:
            in_scenario = [e for e in members if e.scenario == scenario]
            for method in method_order(e.method for e in in_scenario):
                chosen = [e for e in in_scenario if e.method == method]
                cells = {c.key: Cell.of(None if (v := value_at(e.row, c.path)) is None else v * c.scale for e in chosen)
                         for c in ENSEMBLE_COLUMNS}
                table.rows.append(EnsembleRow(scenario, method, chosen, cells))
        tables.append(table)
    return tables


def _ensemble_name(method: str) -> str:
    return "Retrain vs Retrain (halves)" if method == "retrain" else display_name(method)


def _ensemble_lines(table: EnsembleTable) -> list[str]:
    header = ["Row", "K", *(c.title for c in ENSEMBLE_COLUMNS), "Indistinguishable (N of M)", "Verdict"]

    def cells_of(row) -> list[str]:
        cells = [row.cells[c.key].format(c.digits) for c in ENSEMBLE_COLUMNS]
        return [_ensemble_name(row.method), row.sizes, *cells, row.headline, row.verdict]

    return scenario_grouped_table(header, table.rows, cells_of)


def _spread_keys(table: EnsembleTable) -> list[str]:
    present = {key for row in table.rows for e in row.entries for key in e.row["spread"]["comparisons"]}
    return [key for key in SPREAD_KEYS if key in present]


def _retrain_spread(rows: Sequence[EnsembleRow], key: str) -> str:
    """The split's Retrains on `key`: mean ± std (ddof = 1), averaged over splits."""
    per_split = {}
    for row in rows:
        if row.method == "retrain":  # its comparisons are half against half
            continue
        for entry in row.entries:
            comparison = entry.row["spread"]["comparisons"].get(key)
            if comparison is not None:
                per_split[(entry.model, entry.seed, entry.split)] = comparison
    if not per_split:
        return "NA"
    mean = statistics.fmean(c["retrain_mean"] for c in per_split.values()) * 100
    stds = [c["retrain_std"] for c in per_split.values() if c["retrain_std"] is not None]
    return f"{mean:.1f}" + (f" ± {statistics.fmean(stds) * 100:.1f}" if stds else "")


def _spread_cell(row: EnsembleRow, key: str) -> str:
    """The row's mean on `key` and whether it lies inside the Retrain spread ("in", "out", "in 2/3")."""
    comparisons = [e.row["spread"]["comparisons"][key] for e in row.entries if key in e.row["spread"]["comparisons"]]
    if not comparisons:
        return "NA"
    mean = statistics.fmean(c["method_mean"] for c in comparisons) * 100
    tested = [c["inside"] for c in comparisons if c["inside"] is not None]
    if not tested:
        return f"{mean:.1f}"
    inside = sum(tested)
    if len(tested) == 1:
        return f"{mean:.1f} ({'in' if inside else 'out'})"
    return f"{mean:.1f} (in {inside}/{len(tested)})"


def _spread_lines(table: EnsembleTable) -> list[str]:
    keys = _spread_keys(table)
    header = ["Row", *(f"{key} (%)" for key in keys)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scenario in dict.fromkeys(row.scenario for row in table.rows):
        rows = [row for row in table.rows if row.scenario == scenario]
        lines.append(f"| **{SCENARIO_TITLES[scenario]}** |" + " |" * (len(header) - 1))
        lines.append("| " + " | ".join(["Retrains (mean ± std)", *(_retrain_spread(rows, k) for k in keys)]) + " |")
        for row in rows:
            lines.append("| " + " | ".join([_ensemble_name(row.method), *(_spread_cell(row, k) for k in keys)]) + " |")
    return lines


def ensemble_markdown(tables: Sequence[EnsembleTable]) -> list[str]:
    """Both ensemble tables of every (task, corpus), as Markdown lines (empty without ensembles)."""
    lines = []
    for table in tables:
        lines += [f"## Against the Retrain ensemble: {table.title}", "", *_ensemble_lines(table), "",
                  "Retrain spread: each row's mean and whether it lies inside the Retrains' distribution "
                  "(95 % level).", "", *_spread_lines(table), ""]
    return lines
