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

Forgotten recordings are never named in a checkpoint written here: each split is stored as keyed
hashes of its utterance ids (HMAC-SHA256 with a random salt drawn anew for every checkpoint,
`history_salt`) plus counts; speaker names are hashed the same way and file lists dropped. With
the corpus at hand the ids are found again by hashing every utterance id with the salt
(`recorded_split`, `earlier_requests`), so later requests still keep them out of the retain set;
without it the history does not say whom or what was forgotten. Every write re-keys the whole
history with the new checkpoint's salt, older plain entries included.

The default unlearning budget is a stated fraction of the Original's recorded training time
(`DEFAULT_BUDGET_FRACTION`): unlearning that costs as much as training again is not worth it.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..config import from_mapping
from ..data.corpus import Corpus, CorpusError
from ..data.splits import UnlearningSplit

HISTORY_FORMAT = 2  # 1: the three older shapes (see the module docstring)
SALT_KEY = "history_salt"
HASHED_IDS = "forget_id_hmacs"  # a split record holding keyed hashes instead of ids
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
        return {i for forget_split in self.splits for i in forget_split.forget_ids}


def keyed_hash(salt: str, name: str) -> str:
    """HMAC-SHA256 of `name` keyed with the checkpoint's salt (hex)."""
    return hmac.new(bytes.fromhex(salt), name.encode("utf-8"), hashlib.sha256).hexdigest()


def anonymised_forget_split(forget_split: UnlearningSplit, salt: str) -> dict[str, Any]:
    """A split record that names no recording or speaker: keyed hashes of its ids, and counts."""
    params = copy.deepcopy(forget_split.params)
    if "speakers" in params:
        params["speakers"] = sorted(keyed_hash(salt, str(name)) for name in params["speakers"])
    if "items" in params:
        params["items"] = len(params["items"])  # the list asked for: ids or paths of recordings
    return {
        "kind": forget_split.kind,
        "corpus_name": forget_split.corpus_name,
        "corpus_fingerprint": forget_split.corpus_fingerprint,
        "n_items": len(forget_split.forget_ids),
        HASHED_IDS: sorted(keyed_hash(salt, i) for i in forget_split.forget_ids),
        "params": params,
    }


def _reveal(data: Mapping[str, Any], corpus: Corpus, salt: str | None, source: str) -> UnlearningSplit:
    """The split of a keyed record, found again in `corpus`; CorpusError when some ids are gone."""
    if not salt:
        raise CorpusError(f"{source}: holds keyed hashes but the checkpoint records no {SALT_KEY}")
    by_hash = {keyed_hash(salt, u.utt_id): u.utt_id for u in corpus.utterances}
    hashes = list(data.get(HASHED_IDS) or [])
    ids = [by_hash[h] for h in hashes if h in by_hash]
    if len(ids) != len(hashes) or not ids:
        raise CorpusError(f"{source}: its forgotten items must stay forgotten, but {len(hashes) - len(ids)} of "
                          f"{len(hashes)} are not recordings of {corpus.name} (another corpus, or recordings removed)")
    params = copy.deepcopy(dict(data.get("params") or {}))
    if "speakers" in params:
        names = {keyed_hash(salt, str(s)): str(s) for s in set(corpus.speakers.tolist())}
        params["speakers"] = sorted(names[h] for h in params["speakers"] if h in names)
    if data["kind"] == "files":
        params["items"] = sorted(ids)
    return UnlearningSplit(data["kind"], corpus.name, corpus.fingerprint, tuple(sorted(ids)), params)


def anchor_split(data: Any, corpus: Corpus, source: str, salt: str | None = None) -> UnlearningSplit:
    """A stored split (plain or keyed) rebuilt for `corpus` (same ids and params, this corpus's fingerprint).

    The ids, not the fingerprint, are what must match: a moved or re-versioned corpus keeps
    them. CorpusError if one is no longer a training item: it could not be kept forgotten.
    """
    if isinstance(data, Mapping) and HASHED_IDS in data:
        forget_split = _reveal(data, corpus, salt, source)
    else:
        stored = UnlearningSplit.from_dict(data, source=source)
        forget_split = UnlearningSplit(stored.kind, corpus.name, corpus.fingerprint, stored.forget_ids, stored.params)
    try:
        forget_split.forget_indices(corpus)
    except CorpusError as error:
        raise CorpusError(f"{source}: its forgotten items must stay forgotten, but {error}") from None
    return forget_split


def recorded_split(metadata: Mapping[str, Any], corpus: Corpus, source: str) -> UnlearningSplit | None:
    """The cumulative forget set a checkpoint records (`split`, plain or keyed); None when it has none."""
    stored = metadata.get("split")
    if not isinstance(stored, Mapping):
        return None
    return anchor_split(stored, corpus, source, metadata.get(SALT_KEY))


def _entry_splits(entry: Mapping[str, Any]) -> list[Any]:
    """The stored splits of one history entry, in either shape (`splits` or a single `split`)."""
    if entry.get("splits"):
        return list(entry["splits"])
    single = entry.get("split")
    return [single] if isinstance(single, dict) and (single.get("forget_ids") or single.get(HASHED_IDS)) else []


def earlier_requests(metadata: Mapping[str, Any], corpus: Corpus, source: str) -> list[EarlierRequest]:
    """The requests a checkpoint's metadata records as applied, in order (see the module docstring)."""
    found: list[EarlierRequest] = []
    salt = metadata.get(SALT_KEY)
    for position, entry in enumerate(metadata.get("history") or []):
        stored = _entry_splits(entry) if isinstance(entry, dict) else []
        if not stored:
            continue
        name = str(entry.get("request_id") or f"history[{position}] ({entry.get('method', 'unlearn')})")
        splits = tuple(anchor_split(data, corpus, f"{source} history request {name}", salt) for data in stored)
        found.append(EarlierRequest(name, str(entry.get("request_sha256") or ""), splits, entry.get("thresholds")))
    covered = {i for request in found for i in request.forget_ids}
    recorded = recorded_split(metadata, corpus, f"{source} recorded split")
    if recorded is not None and set(recorded.forget_ids) - covered:
        found.append(EarlierRequest("split recorded in the checkpoint", "", (recorded,)))
    return found


def forgotten_positions(earlier: Iterable[EarlierRequest], corpus: Corpus) -> np.ndarray:
    """Sorted corpus positions of every item the earlier requests forgot."""
    positions = [forget_split.forget_indices(corpus) for request in earlier for forget_split in request.splits]
    return np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *positions]))


def merge_forget_splits(corpus: Corpus, splits: Sequence[UnlearningSplit]) -> UnlearningSplit:
    """One split forgetting everything in `splits` (all of `corpus`'s version).

    Splits of one kind merge by kind (a class split keeps its classes, a speaker split its
    speakers); a mix becomes a "files" split of the union of utterance ids.
    """
    from ..config import require

    require(len(splits) > 0, "splits", "nothing to merge")
    for forget_split in splits:
        forget_split.check_corpus(corpus)
    ids = tuple(sorted({i for forget_split in splits for i in forget_split.forget_ids}))
    kinds = {forget_split.kind for forget_split in splits}
    if len(splits) == 1:
        return splits[0]
    if kinds == {"class"}:
        classes = sorted({c for forget_split in splits for c in forget_split.params["classes"]},
                         key=corpus.label_names.index)
        return UnlearningSplit("class", corpus.name, corpus.fingerprint, ids, {"classes": classes})
    if kinds == {"speaker"}:
        speakers = sorted({s for forget_split in splits for s in forget_split.params.get("speakers", [])})
        return UnlearningSplit("speaker", corpus.name, corpus.fingerprint, ids, {"speakers": speakers})
    return UnlearningSplit("files", corpus.name, corpus.fingerprint, ids, {"items": list(ids)})


# ---------------------------------------------------------------------------------------------
# What the Original recorded: its training recipe and time


def train_config_of(metadata: Mapping[str, Any]):
    """The checkpoint's TrainConfig (None when it records none)."""
    from ..training.config import TrainConfig

    stored = metadata.get("train_config")
    return from_mapping(TrainConfig, stored, where="checkpoint train_config") if stored else None


def original_seed(metadata: Mapping[str, Any]) -> int:
    """The seed the Original trained with (0 when unrecorded): its Retrains must use others."""
    config = train_config_of(metadata)
    return int(config.seed) if config is not None else 0


def feature_spec_of(metadata: Mapping[str, Any]):
    """The FeatureSpec of the features the checkpoint's model reads."""
    from ..data.features import FeatureSpec

    return FeatureSpec(**metadata["feature_spec"])


def recorded_training_seconds(metadata: Mapping[str, Any]) -> float | None:
    """How long the Original trained, as its metadata records it (None when unrecorded)."""
    metrics, training = metadata.get("metrics") or {}, metadata.get("training") or {}
    recorded = metrics.get("train_seconds") or training.get("seconds")
    return float(recorded) if recorded else None


def budget_share(metadata: Mapping[str, Any], given: float | None = None) -> float | None:
    """The unlearning budget as a share of the Original's recorded training time: `given` seconds over
    it, else DEFAULT_BUDGET_FRACTION; None when the checkpoint records no training time."""
    recorded = recorded_training_seconds(metadata)
    if recorded is None:
        return None
    return DEFAULT_BUDGET_FRACTION if given is None else float(given) / recorded


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
    """One history entry: the method run, its budget and (for `forget`) the verdict and the thresholds
    it was accepted with; `with_entry` adds the request's splits as keyed records. `details` holds
    tool-specific extras."""
    return {
        "format": HISTORY_FORMAT,
        "tool": tool,
        "request_id": request_id,
        "request_sha256": request_sha256,
        "kinds": list(kinds),
        "n_items": len({i for forget_split in splits for i in forget_split.forget_ids}),
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
        **dict(details or {}),
    }


def with_entry(metadata: Mapping[str, Any], corpus: Corpus, earlier: Sequence[EarlierRequest],
               current: Sequence[UnlearningSplit], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The input's metadata with `entry` appended and the cumulative forget set as `split`, every
    split of the history re-keyed with a fresh salt (see the module docstring).

    `earlier` must be `earlier_requests(metadata, ...)`: its requests are the history's entries
    with splits, in order (and, last, a recorded split no entry covers).
    """
    salt = secrets.token_hex(32)
    history = [dict(old) for old in metadata.get("history") or []]
    with_splits = [old for old in history if _entry_splits(old)]
    for old, request in zip(with_splits, earlier):
        old.pop("split", None)
        old["splits"] = [anonymised_forget_split(forget_split, salt) for forget_split in request.splits]
        old["n_items"] = len(request.forget_ids)
    new = dict(entry)
    new["splits"] = [anonymised_forget_split(forget_split, salt) for forget_split in current]
    every = [forget_split for request in earlier for forget_split in request.splits] + list(current)
    return {
        **metadata,
        SALT_KEY: salt,
        "split": anonymised_forget_split(merge_forget_splits(corpus, every), salt),
        "history": [*history, new],
    }
