"""What verification decides with: `AcceptanceThresholds` (when a deletion request counts as
done), the comparisons of a value with its limit up to `TOLERANCE`, one `Check`, and the
`Verification` that holds every check and gives the verdict (`verify` makes the checks)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from ..config import from_mapping, require

TOLERANCE = 1e-9  # float noise allowed when a value is compared with its limit
VERDICTS = ("pass", "nothing-to-forget", "fail", "no-op")
ACCEPTED = ("pass", "nothing-to-forget")  # the request was applied and no check failed


@dataclass
class AcceptanceThresholds:
    """When a deletion request counts as done (`--threshold key=value`); points are percentage points."""

    forget_tolerance_pp: float = field(
        default=10.0,
        metadata={"help": "Df accuracy may exceed its target by this much (and, for recordings whose labels "
                          "stay in use, also fall short of it by this much)"},
    )
    mia_tolerance_pp: float = field(
        default=10.0, metadata={"help": "loss-MIA accuracy on Df may differ from its target by this much"}
    )
    max_test_drop_pp: float = field(
        default=3.0,
        metadata={"help": "largest allowed drop of Dtest accuracy on the classes still served (negative: "
                          "demand a gain)"},
    )
    max_remaining_drop_pp: float = field(
        default=3.0,
        metadata={"help": "largest allowed drop of the remaining classes' mean per-class accuracy, and of the "
                          "other speakers' accuracy"},
    )
    min_unseen_test_rows: int = field(
        default=20,
        metadata={"help": "test recordings of never-seen speakers needed to use them as the unseen-speaker "
                          "target; fewer: all served test recordings"},
    )
    noise_z: float = field(
        default=1.96,
        metadata={"help": "widen each forgetting tolerance by this many standard errors of the value's sampling noise "
                          "at its sample size (a 15-recording group measures its accuracy to about +-25 pp at 95 %); "
                          "0: fixed tolerances"},
    )
    min_check_items: int = field(
        default=10,
        metadata={"help": "recordings a forgetting check needs to mean anything; fewer: 'not enough recordings'"},
    )
    recheck_earlier: bool = field(
        default=True, metadata={"help": "check the items of earlier requests again (they must stay forgotten)"}
    )

    def __post_init__(self) -> None:
        for name in ("forget_tolerance_pp", "mia_tolerance_pp"):
            require(0 <= getattr(self, name) <= 100, name, f"must be in [0, 100], got {getattr(self, name)}")
        for name in ("max_test_drop_pp", "max_remaining_drop_pp"):
            require(-100 <= getattr(self, name) <= 100, name, f"must be in [-100, 100], got {getattr(self, name)}")
        require(self.min_unseen_test_rows >= 1, "min_unseen_test_rows", f"must be >= 1, got {self.min_unseen_test_rows}")
        require(self.min_check_items >= 1, "min_check_items", f"must be >= 1, got {self.min_check_items}")
        require(0 <= self.noise_z <= 10, "noise_z", f"must be in [0, 10], got {self.noise_z}")

    def widened_pp(self, tolerance_pp: float, rate: float | None, n: int) -> float:
        """`tolerance_pp` plus `noise_z` standard errors, in points, of a rate near `rate` measured on
        `n` items: a value that close to its target is inside the sampling noise of n recordings."""
        if n <= 0 or self.noise_z == 0 or rate is None:
            return tolerance_pp
        rate = min(max(float(rate), 0.0), 1.0)
        return tolerance_pp + 100 * self.noise_z * math.sqrt(rate * (1 - rate) / n)


def thresholds_from(stored: Mapping[str, Any] | None, default: AcceptanceThresholds) -> AcceptanceThresholds:
    """The thresholds a history entry recorded (keys of older versions ignored), else `default`."""
    if not stored:
        return default
    known = {f.name for f in dataclasses.fields(AcceptanceThresholds)}
    # Requests accepted before the noise widening existed were judged with fixed tolerances.
    values = {"noise_z": 0.0, **{k: v for k, v in stored.items() if k in known}}
    return from_mapping(AcceptanceThresholds, values, where="thresholds recorded in the checkpoint history")


def within(value: float, target: float, tolerance_pp: float) -> bool:
    """|value - target| <= tolerance, up to float noise (0.6000000000000001 is within 10 pp of 0.5)."""
    return abs(value - target) <= tolerance_pp / 100 + TOLERANCE


def at_most_above(value: float, target: float, tolerance_pp: float) -> bool:
    """value <= target + tolerance, up to float noise."""
    return value <= target + tolerance_pp / 100 + TOLERANCE


@dataclass
class Check:
    """One acceptance check: a value, its target, the rule, and whether it passed (None: not run)."""

    name: str
    category: str  # "forgetting" | "utility" | "earlier requests"
    value: float | None
    target: float | None
    target_source: str  # what the target is, e.g. "chance, 1/10"
    rule: str  # e.g. "within 10 pp of the target"
    passed: bool | None
    note: str = ""
    n: int | None = None  # recordings the value was measured on
    interval: tuple[float, float] | None = None  # 95 % interval of the value
    original_passed: bool | None = None  # whether the model before unlearning already met the check

    @property
    def result(self) -> str:
        """"pass", "FAIL", "not enough recordings (n = 3)" or "not run"."""
        if self.passed is not None:
            return "pass" if self.passed else "FAIL"
        return self.note if self.note.startswith("not enough recordings") else "not run"

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["interval"] = list(self.interval) if self.interval is not None else None
        values["result"] = self.result
        return values


def before_met_every_check(checks: Sequence[Check]) -> bool:
    """Whether the model before unlearning already met every check that ran (at least one)."""
    ran = [check for check in checks if check.passed is not None]
    return bool(ran) and all(check.original_passed is not False for check in ran)


@dataclass
class Verification:
    """Everything `verify_request` measured and decided."""

    checks: list[Check]
    metrics: dict[str, dict[str, Any]]  # role -> metric name -> value (rates in [0, 1])
    thresholds: AcceptanceThresholds
    notes: list[str]
    gap_to_retrain: dict | None = None
    weights_changed: bool | None = None  # None: not known (the caller did not compare)

    @property
    def verdict(self) -> str:
        """"fail" when a check failed; "no-op" when the weights did not change; "nothing-to-forget"
        when the model before unlearning already met every check (the checks cannot tell that
        anything was forgotten, so this is not a pass); else "pass"."""
        if any(check.passed is False for check in self.checks):
            return "fail"
        if self.weights_changed is False:
            return "no-op"
        return "nothing-to-forget" if self.nothing_to_forget else "pass"

    @property
    def accepted(self) -> bool:
        """Whether the unlearned model is kept: applied, changed, and no check failed."""
        return self.verdict in ACCEPTED

    @property
    def nothing_to_forget(self) -> bool:
        """Whether the model before unlearning already met every check that ran."""
        return before_met_every_check(self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.passed is False]
