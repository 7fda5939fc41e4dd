"""`--method auto`: the method a benchmark found best for a request's scenario and task.

The caller hands over a choice table (`load_choice_table`: the shipped `method_choice.json`, or a
table built from a benchmark run folder by `experiments.choice_table.choice_table_from_runs`);
`choose_method` picks from it: for each (task, scenario) the method with the lowest mean Avg.
Gap to Retrain among methods no slower than Retrain, with the settings it was benchmarked with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import ConfigError, require
from ..io import read_json

CHOICE_FILE = Path(__file__).with_name("method_choice.json")
CHOICE_FORMAT_VERSION = 1
SCENARIO_PRIORITY: tuple[str, ...] = ("class", "speaker", "sample")  # the harder scenario decides a mix


def request_scenario(kinds: Iterable[str], task: str) -> str:
    """The benchmark scenario a request matches: keyword -> class; speaker -> speaker in KWS but
    class in SID (a speaker is a class there); files -> sample. A mix takes the hardest."""
    scenarios = set()
    for kind in kinds:
        if kind == "keyword" or (kind == "speaker" and task == "sid"):
            scenarios.add("class")
        else:
            scenarios.add("speaker" if kind == "speaker" else "sample")
    require(bool(scenarios), "request", "has no component")
    return next(s for s in SCENARIO_PRIORITY if s in scenarios)


@dataclass(frozen=True)
class MethodChoice:
    """The method `auto` picked, and the evidence it was picked on."""

    method: str
    source: str  # "user", "shipped table <path>" or "benchmark runs <dir>"
    task: str | None = None
    scenario: str | None = None
    avg_gap_pp: float | None = None
    detail: dict = field(default_factory=dict)

    def overrides(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The settings to run with: those the benchmarked configuration used, then `given` (--set) on top."""
        return {**self.detail.get("overrides", {}), **given}

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "source": self.source, "task": self.task, "scenario": self.scenario,
                "avg_gap_pp": self.avg_gap_pp, "detail": self.detail}


def load_choice_table(path: str | Path = CHOICE_FILE) -> dict[str, Any]:
    """Read and check a method-choice table (the shipped one by default)."""
    path = Path(path)
    table = read_json(path, "method choice table")
    if not isinstance(table, dict) or table.get("format_version") != CHOICE_FORMAT_VERSION:
        raise ConfigError(f"method choice table {path}: format_version must be {CHOICE_FORMAT_VERSION}")
    choices = table.get("choices")
    if not isinstance(choices, dict):
        raise ConfigError(f"method choice table {path}: 'choices' must map task -> scenario -> choice")
    for task, scenarios in choices.items():
        for scenario, entry in (scenarios or {}).items():
            if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
                raise ConfigError(f"method choice table {path}: choices.{task}.{scenario} needs a 'method' name")
    return table


def choose_from_table(table: Mapping[str, Any], task: str, scenario: str, source: str) -> MethodChoice:
    """The table's method for (task, scenario); ConfigError if the table has no entry."""
    entry = (table["choices"].get(task) or {}).get(scenario)
    if entry is None:
        raise ConfigError(f"{source} has no method for task {task!r}, scenario {scenario!r}; pass --method NAME")
    detail = {key: value for key, value in entry.items() if key not in ("method", "avg_gap_pp")}
    detail["provenance"] = table.get("provenance", {})
    return MethodChoice(entry["method"], source, task, scenario, entry.get("avg_gap_pp"), detail)


REGENERATE_HINT = (
    "speech-unlearn forget --auto-from RUN_DIR --export-choice "
    "src/speech_unlearning/forgetting/method_choice.json (RUN_DIR: a finished `speech-unlearn bench` run folder)"
)


def choose_method(
    name: str,
    task: str,
    kinds: Iterable[str],
    table: Mapping[str, Any] | None = None,
    table_source: str = f"shipped table {CHOICE_FILE}",
) -> MethodChoice:
    """The method to run: `name` itself, or for "auto" the choice `table` holds for the request's
    scenario and task (the shipped table when None)."""
    if name != "auto":
        return MethodChoice(name, "user")
    scenario = request_scenario(kinds, task)
    if table is None:
        table = load_choice_table(CHOICE_FILE)
    return choose_from_table(table, task, scenario, table_source)
