"""A checkpoint's history: what earlier requests forgot, and the one format every path writes.

Every tool that unlearns (`forget`, `unlearn`, the benchmark's unlearn stage) appends one entry
made by `history_entry` to the checkpoint's `history` and records the cumulative forget set as the
top-level `split`. Each entry holds the request's splits under `splits` and the thresholds it was
accepted with (None when it was not verified), so a later request can keep its recordings out of
the retain set and check them again against the same bar.

Checkpoints written before this format are still read (`earlier_requests`): a `forget` entry
with `splits`, an `unlearn` entry with a single `split`, and a top-level `split` no entry covers
(a benchmark model). Reading the three is what stops a later `unlearn` from putting recordings
forgotten by `forget` or the benchmark back into the retain set.

The default unlearning budget is a stated fraction of the Original's recorded training time
(`DEFAULT_BUDGET_FRACTION`): unlearning that costs as much as training again is not worth it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..config import from_mapping
from ..data.corpus import Corpus, CorpusError
from ..data.splits import UnlearningSplit

HISTORY_FORMAT = 2  # 1: the three older shapes (see the module docstring)
DEFAULT_BUDGET_FRACTION = 0.10  # of the Original's recorded training time


@dataclass(frozen=True)
class EarlierRequest:
    """A request an input checkpoint has already applied: its items must stay forgotten."""

    request_id: str
    request_sha256: str
    splits: tuple[UnlearningSplit, ...]
    thresholds: Mapping[str, Any] | None = None  # what it was accepted with (None: not verified)

    @property
    def forget_ids(self) -> set[str]:
        return {i for split in self.splits for i in split.forget_ids}


def anchor_split(data: Any, corpus: Corpus, source: str) -> UnlearningSplit:
    """A stored split rebuilt for `corpus` (same ids and params, this corpus's fingerprint).

    The ids, not the fingerprint, are what must match: a moved or re-versioned corpus keeps
    them. CorpusError if one is no longer a training item: it could not be kept forgotten.
    """
    stored = UnlearningSplit.from_dict(data, source=source)
    split = UnlearningSplit(stored.kind, corpus.name, corpus.fingerprint, stored.forget_ids, stored.params)
    try:
        split.forget_indices(corpus)
    except CorpusError as error:
        raise CorpusError(f"{source}: its forgotten items must stay forgotten, but {error}") from None
    return split


def _entry_splits(entry: Mapping[str, Any]) -> list[Any]:
    """The stored splits of one history entry, in either shape (`splits` or a single `split`)."""
    if entry.get("splits"):
        return list(entry["splits"])
    single = entry.get("split")
    return [single] if isinstance(single, dict) and single.get("forget_ids") else []


def earlier_requests(metadata: Mapping[str, Any], corpus: Corpus, source: str) -> list[EarlierRequest]:
    """The requests a checkpoint's metadata records as applied, in order (see the module docstring)."""
    found: list[EarlierRequest] = []
    for position, entry in enumerate(metadata.get("history") or []):
        stored = _entry_splits(entry) if isinstance(entry, dict) else []
        if not stored:
            continue
        name = str(entry.get("request_id") or f"history[{position}] ({entry.get('method', 'unlearn')})")
        splits = tuple(anchor_split(data, corpus, f"{source} history request {name}") for data in stored)
        found.append(EarlierRequest(name, str(entry.get("request_sha256") or ""), splits, entry.get("thresholds")))
    covered = {i for request in found for i in request.forget_ids}
    recorded = metadata.get("split")
    if isinstance(recorded, dict) and set(recorded.get("forget_ids") or []) - covered:
        split = anchor_split(recorded, corpus, f"{source} recorded split")
        found.append(EarlierRequest("split recorded in the checkpoint", "", (split,)))
    return found


def forgotten_positions(earlier: Iterable[EarlierRequest], corpus: Corpus) -> np.ndarray:
    """Sorted corpus positions of every item the earlier requests forgot."""
    positions = [split.forget_indices(corpus) for request in earlier for split in request.splits]
    return np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *positions]))


def merge_splits(corpus: Corpus, splits: Sequence[UnlearningSplit]) -> UnlearningSplit:
    """One split forgetting everything in `splits` (all of `corpus`'s version).

    Splits of one kind merge by kind (a class split keeps its classes, a speaker split its
    speakers); a mix becomes a "files" split of the union of utterance ids.
    """
    from ..config import require

    require(len(splits) > 0, "splits", "nothing to merge")
    for split in splits:
        split.check_corpus(corpus)
    ids = tuple(sorted({i for split in splits for i in split.forget_ids}))
    kinds = {split.kind for split in splits}
    if len(splits) == 1:
        return splits[0]
    if kinds == {"class"}:
        classes = sorted({c for split in splits for c in split.params["classes"]}, key=corpus.label_names.index)
        return UnlearningSplit("class", corpus.name, corpus.fingerprint, ids, {"classes": classes})
    if kinds == {"speaker"}:
        speakers = sorted({s for split in splits for s in split.params.get("speakers", [])})
        return UnlearningSplit("speaker", corpus.name, corpus.fingerprint, ids, {"speakers": speakers})
    return UnlearningSplit("files", corpus.name, corpus.fingerprint, ids, {"items": list(ids)})


# ---------------------------------------------------------------------------------------------
# What the Original recorded: its training recipe and time


def train_config_of(metadata: Mapping[str, Any]):
    """The checkpoint's TrainConfig (None when it records none)."""
    from ..training.loop import TrainConfig

    stored = metadata.get("train_config")
    return from_mapping(TrainConfig, stored, where="checkpoint train_config") if stored else None


def recorded_training_seconds(metadata: Mapping[str, Any]) -> float | None:
    """How long the Original trained, as its metadata records it (None when unrecorded)."""
    metrics, training = metadata.get("metrics") or {}, metadata.get("training") or {}
    recorded = metrics.get("train_seconds") or training.get("seconds")
    return float(recorded) if recorded else None


@dataclass(frozen=True)
class BudgetChoice:
    """The unlearning time cap and where it came from, for the audit."""

    seconds: float | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": None if self.seconds is None else round(self.seconds, 2), "source": self.source}


def default_budget(metadata: Mapping[str, Any], given: float | None = None, lifted: bool = False) -> BudgetChoice:
    """`given` seconds when given; no cap when `lifted`; else DEFAULT_BUDGET_FRACTION of the recorded
    training time (no cap when none is recorded)."""
    if lifted:
        return BudgetChoice(None, "no cap (asked for)")
    if given is not None:
        return BudgetChoice(float(given), "--budget-seconds")
    recorded = recorded_training_seconds(metadata)
    if recorded is None:
        return BudgetChoice(None, "no cap: the checkpoint records no training time")
    share = f"{100 * DEFAULT_BUDGET_FRACTION:g} %"
    return BudgetChoice(recorded * DEFAULT_BUDGET_FRACTION,
                        f"default: {share} of the Original's recorded training time ({recorded:.1f} s)")


# ---------------------------------------------------------------------------------------------
# The one format every path writes


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def history_entry(
    *,
    tool: str,
    splits: Sequence[UnlearningSplit],
    result: Any,  # methods.UnlearnResult
    budget: BudgetChoice,
    parent_sha256: str | None,
    request_id: str | None = None,
    request_sha256: str | None = None,
    kinds: Sequence[str] = (),
    verdict: str | None = None,
    thresholds: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One history entry: the request's splits, the method run, its budget and (for `forget`) the
    verdict and the thresholds it was accepted with. `details` holds tool-specific extras."""
    return {
        "format": HISTORY_FORMAT,
        "tool": tool,
        "request_id": request_id,
        "request_sha256": request_sha256,
        "kinds": list(kinds),
        "n_items": len({i for split in splits for i in split.forget_ids}),
        "method": result.name,
        "config": result.config_dict(),
        "seed": result.seed,
        "seconds": result.seconds,
        "steps": result.steps,
        "budget_seconds": budget.seconds,
        "budget_source": budget.source,
        "budget_exhausted": result.budget_exhausted,
        "diverged": result.diverged,
        "verdict": verdict,
        "thresholds": dict(thresholds) if thresholds is not None else None,
        "timestamp": utc_now(),
        "parent_sha256": parent_sha256,
        "splits": [split.to_dict() for split in splits],
        **dict(details or {}),
    }


def with_entry(metadata: Mapping[str, Any], corpus: Corpus, earlier: Sequence[EarlierRequest],
               current: Sequence[UnlearningSplit], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The input's metadata with `entry` appended and the cumulative forget set as `split`."""
    every = [split for request in earlier for split in request.splits] + list(current)
    return {
        **metadata,
        "split": merge_splits(corpus, every).to_dict(),
        "history": [*(metadata.get("history") or []), dict(entry)],
    }
