"""Deletion requests against a deployed model: what to forget, resolved to training items.

A `DeletionRequest` names speakers, keywords and files (utterance ids or audio paths), with an
optional request id and a free-text reason. It comes from the command line or from a YAML file:

    id: REQ-2024-0042              # optional; default "req-" + the first 12 hex digits of its hash
    reason: erasure request by the speaker, ticket 1234
    speakers: [jackson]
    keywords: ["3"]
    files: [recordings/3_theo_12.wav, 0_nicolas_20]
    files_from: more_files.txt     # optional list file, one item a line, relative to this YAML

`resolve_request` turns it into `RequestComponent`s (one per kind) of training utterance ids,
refusing what cannot be forgotten: unknown ids, recordings outside the training set (unless the
caller ignores them), paths outside the corpus root (always), an empty request, and a request
that would leave no training data. Items already forgotten by earlier requests are not counted
again. `Resolution.counts` is what the command shows before it unlearns anything.

`choose_method` implements `--method auto`: the method the benchmark found best (lowest Avg. Gap
to Retrain among methods within the time limit) for the request's scenario and task, read from
the shipped table `method_choice.json` or from a benchmark run folder (`choice_table_from_runs`).
"""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml

from ..config import ConfigError, require
from ..data.corpus import Corpus, CorpusError
from ..data.splits import UnlearningSplit, corpus_path
from ..io import read_json, sha256_json

REQUEST_KINDS: tuple[str, ...] = ("keyword", "speaker", "files")  # also the priority of overlapping items
REQUEST_FILE_KEYS: tuple[str, ...] = ("id", "reason", "speakers", "keywords", "files", "files_from")
SPLIT_KIND_OF = {"keyword": "class", "speaker": "speaker", "files": "files"}
SHOWN_ITEMS = 20  # how many culprits an error message lists before abbreviating


def listing(items: Sequence[str], limit: int = SHOWN_ITEMS) -> str:
    """'a, b, c' or 'a, b, ... (and 40 more)' for messages."""
    items = [str(item) for item in items]
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])}, ... (and {len(items) - limit} more)"


# ---------------------------------------------------------------------------------------------
# The request


@dataclass(frozen=True)
class DeletionRequest:
    """What a user asked to forget. Names are kept as given (order and duplicates dropped)."""

    speakers: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    request_id: str | None = None
    reason: str = ""
    source: str = "command line"  # where it came from, for messages

    def __post_init__(self) -> None:
        for name in ("speakers", "keywords", "files"):
            values = getattr(self, name)
            require(
                not isinstance(values, str) and all(isinstance(v, str) and v.strip() for v in values),
                name,
                f"must be a list of non-empty strings, got {values!r}",
            )
            object.__setattr__(self, name, tuple(dict.fromkeys(v.strip() for v in values)))
        require(
            self.request_id is None or (isinstance(self.request_id, str) and self.request_id.strip() != ""),
            "id",
            f"must be a non-empty string, got {self.request_id!r}",
        )
        require(isinstance(self.reason, str), "reason", f"must be text, got {self.reason!r}")

    def items(self, kind: str) -> tuple[str, ...]:
        """The names asked for `kind` ("keyword", "speaker" or "files")."""
        return {"keyword": self.keywords, "speaker": self.speakers, "files": self.files}[kind]

    @property
    def is_empty(self) -> bool:
        return not (self.speakers or self.keywords or self.files)

    def canonical(self) -> dict[str, Any]:
        """What the request hash covers: its id, reason and every name asked for (sorted)."""
        return {
            "id": self.request_id,
            "reason": self.reason,
            "speakers": sorted(self.speakers),
            "keywords": sorted(self.keywords),
            "files": sorted(self.files),
        }

    @property
    def sha256(self) -> str:
        return sha256_json(self.canonical())

    @property
    def effective_id(self) -> str:
        """The given id, else "req-" + the first 12 hex digits of the request hash."""
        return self.request_id or f"req-{self.sha256[:12]}"


def read_item_list(path: str | Path, what: str = "--files") -> list[str]:
    """Items of a list file: one path or utterance id a line; blank lines and '#' comments skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path}: no such list file") from None
    except (UnicodeDecodeError, IsADirectoryError) as error:
        raise ConfigError(f"{what} {path}: not a readable text list ({error})") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _name_list(value: Any, key: str, source: str) -> list[str]:
    """A YAML scalar or list -> list of strings; integers (keyword 3) become their text."""
    values = value if isinstance(value, list) else [value]
    names = []
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ConfigError(f"request file {source}: {key} must hold names (strings), got {item!r}")
        names.append(str(item))
    return names


def load_request_file(path: str | Path) -> DeletionRequest:
    """Read a request YAML (see the module docstring); ConfigError naming the file and key at fault."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"--request {path}: no such request file") from None
    except (yaml.YAMLError, UnicodeDecodeError, IsADirectoryError) as error:
        raise ConfigError(f"request file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"request file {path}: expected a mapping with keys {', '.join(REQUEST_FILE_KEYS)}")
    unknown = sorted(str(key) for key in data if key not in REQUEST_FILE_KEYS)
    if unknown:
        raise ConfigError(
            f"request file {path}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(REQUEST_FILE_KEYS)}"
        )
    lists = {key: _name_list(data[key], key, str(path)) for key in ("speakers", "keywords", "files") if data.get(key) is not None}
    if data.get("files_from") is not None:
        if not isinstance(data["files_from"], str):
            raise ConfigError(f"request file {path}: files_from must be a path, got {data['files_from']!r}")
        lists["files"] = lists.get("files", []) + read_item_list(path.parent / data["files_from"], f"{path}: files_from")
    for key in ("id", "reason"):
        if data.get(key) is not None and (isinstance(data[key], bool) or not isinstance(data[key], (str, int))):
            raise ConfigError(f"request file {path}: {key} must be text, got {data[key]!r}")
    try:
        return DeletionRequest(
            speakers=tuple(lists.get("speakers", ())),
            keywords=tuple(lists.get("keywords", ())),
            files=tuple(lists.get("files", ())),
            request_id=None if data.get("id") is None else str(data["id"]),
            reason="" if data.get("reason") is None else str(data["reason"]),
            source=str(path),
        )
    except ConfigError as error:
        raise ConfigError(f"request file {path}: {error}") from None


# ---------------------------------------------------------------------------------------------
# Resolution against the corpus


@dataclass(frozen=True)
class Unresolved:
    """A requested name that matches no training item, and why."""

    kind: str
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} ({self.reason})"


@dataclass(frozen=True)
class RequestComponent:
    """The training items one kind of the request forgets now (earlier-forgotten ones excluded)."""

    kind: str  # "keyword" | "speaker" | "files"
    names: tuple[str, ...]  # the keywords / speakers / list items that resolved
    forget_ids: tuple[str, ...]  # sorted utterance ids

    def split(self, corpus: Corpus, request_id: str) -> UnlearningSplit:
        """This component as an UnlearningSplit (a keyword is a class split)."""
        params: dict[str, Any] = {"request": request_id}
        params.update({"keyword": {"classes": list(self.names)}, "speaker": {"speakers": sorted(self.names)},
                       "files": {"items": list(self.names)}}[self.kind])
        return UnlearningSplit(SPLIT_KIND_OF[self.kind], corpus.name, corpus.fingerprint, self.forget_ids, params)


@dataclass(frozen=True)
class Resolution:
    """A request resolved against one corpus."""

    request: DeletionRequest
    components: tuple[RequestComponent, ...]
    ignored: tuple[Unresolved, ...] = ()  # dropped under --ignore-unknown
    already_forgotten: tuple[str, ...] = ()  # matched, but forgotten by an earlier request
    overlaps: dict[str, int] = field(default_factory=dict)  # kind -> items counted under a higher-priority kind

    @property
    def forget_ids(self) -> tuple[str, ...]:
        return tuple(sorted(i for component in self.components for i in component.forget_ids))

    def forget_positions(self, corpus: Corpus) -> np.ndarray:
        return np.array(sorted(corpus.index_of[i] for i in self.forget_ids), dtype=np.int64)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(component.kind for component in self.components)

    def splits(self, corpus: Corpus) -> list[UnlearningSplit]:
        return [component.split(corpus, self.request.effective_id) for component in self.components]

    def counts(self, corpus: Corpus) -> dict[str, Any]:
        """Items to forget: in total, per request kind, per class and per speaker."""
        positions = self.forget_positions(corpus)
        per_class = Counter(corpus.label_names[label] for label in corpus.labels[positions])
        per_speaker = Counter(str(speaker) for speaker in corpus.speakers[positions])
        return {
            "total": int(len(positions)),
            "per_kind": {component.kind: len(component.forget_ids) for component in self.components},
            "per_class": dict(sorted(per_class.items())),
            "per_speaker": dict(sorted(per_speaker.items())),
            "already_forgotten": len(self.already_forgotten),
            "ignored": [str(item) for item in self.ignored],
        }


def _training_positions(corpus: Corpus, mask: np.ndarray) -> np.ndarray:
    """Training positions among the rows selected by `mask` (N,)."""
    train = corpus.indices("train")
    return train[mask[train]]


def _resolve_keywords(corpus: Corpus, keywords: Iterable[str]) -> tuple[dict[str, np.ndarray], list[Unresolved]]:
    found, problems = {}, []
    for keyword in keywords:
        if keyword not in corpus.label_names:
            problems.append(Unresolved("keyword", keyword, f"not a class of {corpus.name}; classes: {listing(corpus.label_names, 12)}"))
            continue
        positions = _training_positions(corpus, corpus.labels == corpus.label_names.index(keyword))
        if len(positions) == 0:
            problems.append(Unresolved("keyword", keyword, "has no training recordings"))
        else:
            found[keyword] = positions
    return found, problems


def _resolve_speakers(corpus: Corpus, speakers: Iterable[str]) -> tuple[dict[str, np.ndarray], list[Unresolved]]:
    known = set(corpus.speakers.tolist())
    found, problems = {}, []
    for speaker in speakers:
        if speaker not in known:
            problems.append(Unresolved("speaker", speaker, f"not a speaker of {corpus.name}"))
            continue
        positions = _training_positions(corpus, corpus.speakers == speaker)
        if len(positions) == 0:
            problems.append(Unresolved("speaker", speaker, "has no training recordings (only validation / test)"))
        else:
            found[speaker] = positions
    return found, problems


def _positions_by_file(corpus: Corpus) -> dict[str, list[int]]:
    """Normalised absolute audio path -> corpus positions cut from that file."""
    by_path: dict[str, list[int]] = {}
    for position, utterance in enumerate(corpus.utterances):
        by_path.setdefault(os.path.normpath(os.path.abspath(utterance.path)), []).append(position)
    return by_path


def _resolve_files(corpus: Corpus, items: Iterable[str]) -> tuple[dict[str, np.ndarray], list[Unresolved]]:
    """Utterance ids or audio paths; a path outside the corpus root raises CorpusError at once."""
    by_path: dict[str, list[int]] | None = None
    found, problems = {}, []
    for item in items:
        if item in corpus.index_of:
            matches = [corpus.index_of[item]]
        else:
            by_path = by_path if by_path is not None else _positions_by_file(corpus)
            matches = by_path.get(corpus_path(corpus, item), [])  # CorpusError for a path escaping the root
        if not matches:
            problems.append(Unresolved("file", item, f"neither an utterance id nor an audio file of {corpus.name}"))
            continue
        splits = sorted({corpus.utterances[p].split for p in matches} - {"train"})
        training = [p for p in matches if corpus.utterances[p].split == "train"]
        if not training:
            problems.append(Unresolved("file", item, f"a {'/'.join(splits)} recording, not in the training set"))
        else:
            found[item] = np.array(training, dtype=np.int64)
    return found, problems


def _check_request_shape(corpus: Corpus, request: DeletionRequest) -> None:
    if request.is_empty:
        raise CorpusError(f"{request.source}: the request names no speaker, keyword or file (empty request)")
    if request.keywords and corpus.task != "kws":
        raise CorpusError(
            f"{request.source}: keywords {listing(request.keywords)} given, but {corpus.name} is a "
            f"{corpus.task} corpus whose classes are speakers; ask for --speaker instead"
        )


def resolve_request(
    corpus: Corpus,
    request: DeletionRequest,
    earlier_ids: Iterable[str] = (),
    ignore_unknown: bool = False,
) -> Resolution:
    """Map `request` to training utterance ids of `corpus`.

    Raises CorpusError (naming every culprit) for: an empty request; keywords on a speaker-ID
    corpus; a path outside the corpus root (always); names that are unknown or match no
    training item (unless `ignore_unknown`, which drops them, provided something remains);
    a request whose items were all forgotten before (`earlier_ids`); and a request that,
    with the earlier ones, would forget the whole training set. An item matched by several
    kinds is counted once, under the first of keyword, speaker, files.
    """
    _check_request_shape(corpus, request)
    resolvers = {"keyword": _resolve_keywords, "speaker": _resolve_speakers, "files": _resolve_files}
    matched: dict[str, dict[str, np.ndarray]] = {}
    problems: list[Unresolved] = []
    for kind in REQUEST_KINDS:
        if request.items(kind):
            matched[kind], kind_problems = resolvers[kind](corpus, request.items(kind))
            problems += kind_problems
    if problems and not ignore_unknown:
        raise CorpusError(
            f"{request.source}: {len(problems)} requested item(s) cannot be resolved to training recordings of "
            f"{corpus.name}: {listing([str(p) for p in problems])}. Fix the request, or pass --ignore-unknown "
            "to forget only the items that resolve"
        )
    components, already, overlaps = _components(corpus, matched, set(earlier_ids))
    resolution = Resolution(request, tuple(components), tuple(problems), tuple(sorted(already)), overlaps)
    _check_size(corpus, request, resolution, set(earlier_ids))
    return resolution


def _components(
    corpus: Corpus, matched: Mapping[str, Mapping[str, np.ndarray]], earlier: set[str]
) -> tuple[list[RequestComponent], set[str], dict[str, int]]:
    """One component per kind, each item under its first kind only and earlier-forgotten ones left out."""
    taken: set[str] = set()
    already: set[str] = set()
    components, overlaps = [], {}
    for kind in REQUEST_KINDS:
        if not matched.get(kind):
            continue
        ids = {corpus.utterances[p].utt_id for positions in matched[kind].values() for p in positions}
        already |= ids & earlier
        overlaps[kind] = len((ids - earlier) & taken)
        fresh = sorted(ids - earlier - taken)
        taken |= set(fresh)
        if fresh:
            components.append(RequestComponent(kind, tuple(matched[kind]), tuple(fresh)))
    return components, already, {kind: n for kind, n in overlaps.items() if n}


def _check_size(corpus: Corpus, request: DeletionRequest, resolution: Resolution, earlier: set[str]) -> None:
    n_train = len(corpus.indices("train"))
    if not resolution.forget_ids:
        why = []
        if resolution.already_forgotten:
            why.append(f"its {len(resolution.already_forgotten)} matching item(s) were forgotten by earlier requests")
        if resolution.ignored:
            why.append(f"ignored: {listing([str(p) for p in resolution.ignored])}")
        raise CorpusError(
            f"{request.source}: the request selects no training items to forget (empty request"
            + (f"; {'; '.join(why)}" if why else "")
            + ")"
        )
    remaining = n_train - len(set(resolution.forget_ids) | earlier)
    if remaining <= 0:
        raise CorpusError(
            f"{request.source}: the request selects the whole training set of {corpus.name} ({n_train} items"
            + (f", with {len(earlier)} forgotten earlier" if earlier else "")
            + "); nothing would be retained: that is deleting the model, not unlearning"
        )


def merge_splits(corpus: Corpus, splits: Sequence[UnlearningSplit]) -> UnlearningSplit:
    """One split forgetting everything in `splits` (all of `corpus`'s version).

    Splits of one kind merge by kind (a class split keeps its classes, a speaker split its
    speakers); a mix becomes a "files" split of the union of utterance ids.
    """
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
# Earlier requests recorded in a checkpoint


@dataclass(frozen=True)
class EarlierRequest:
    """A request an input checkpoint has already applied: its items must stay forgotten."""

    request_id: str
    request_sha256: str
    splits: tuple[UnlearningSplit, ...]

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


def earlier_requests(metadata: Mapping[str, Any], corpus: Corpus, source: str) -> list[EarlierRequest]:
    """The requests a checkpoint's metadata records as applied, in order.

    Each `history` entry with `splits` is one request. A forget split recorded under `split`
    whose items no history entry covers (a model unlearned by the benchmark or `unlearn`)
    counts as one more.
    """
    found: list[EarlierRequest] = []
    for position, entry in enumerate(metadata.get("history") or []):
        if not isinstance(entry, dict) or not entry.get("splits"):
            continue
        name = str(entry.get("request_id", f"history[{position}]"))
        splits = tuple(anchor_split(data, corpus, f"{source} history request {name}") for data in entry["splits"])
        found.append(EarlierRequest(name, str(entry.get("request_sha256", "")), splits))
    covered = {i for request in found for i in request.forget_ids}
    recorded = metadata.get("split")
    if isinstance(recorded, dict) and set(recorded.get("forget_ids") or []) - covered:
        split = anchor_split(recorded, corpus, f"{source} recorded split")
        found.append(EarlierRequest("split recorded in the checkpoint", "", (split,)))
    return found


# ---------------------------------------------------------------------------------------------
# `--method auto`: the benchmark's best method per (task, scenario)

CHOICE_FILE = Path(__file__).with_name("method_choice.json")
CHOICE_FORMAT_VERSION = 1
SCENARIO_PRIORITY: tuple[str, ...] = ("class", "speaker", "sample")  # the harder scenario decides a mix
REFERENCE_METHODS = ("original", "retrain")  # benchmark rows that are references, not choices
DEFAULT_MAX_TIME_RATIO = 1.0  # "within the time limit": no slower than retraining


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


def _mean(values: Iterable[float | None]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.fmean(finite) if finite else None


def _candidate_rows(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(one row per finished test-split evaluation of an unlearning method, the grid's config)."""
    from .report import EvaluationContext, variant_label
    from .store import ResultStore

    try:
        store = ResultStore.existing(run_dir)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--auto-from: {error}") from None
    with store:
        records = store.records(stage="evaluate", status="done")
        context = EvaluationContext.of(store)
        grid = store.get_meta("config", {}) or {}
    if any(context.retrain_kind_of(record) != "steps" for record in records):
        # Gaps to two kinds of Retrain are not comparable: rank against the paper's kind, unless
        # the folder holds only step-matched references.
        records = [record for record in records if context.retrain_kind_of(record) != "steps"]
    rows = []
    for record in records:
        config, metrics = record.config, record.metrics or {}
        split = config.get("split") or {}
        if split.get("role", "test") != "test" or config.get("method") in REFERENCE_METHODS:
            continue
        method, overrides = config["method"], context.overrides_of(record)
        rows.append({
            "task": config.get("task"), "scenario": split.get("scenario"), "method": method, "overrides": overrides,
            "variant": variant_label(method, overrides),
            "model": config.get("model"), "corpus": config.get("corpus"), "avg_gap_pp": metrics.get("avg_gap_pp"),
            "time_ratio": ((metrics.get("metrics") or {}).get("time") or {}).get("ratio"),
        })  # fmt: skip
    return rows, grid


def _rank(rows: Sequence[Mapping[str, Any]], max_time_ratio: float) -> dict[str, Any] | None:
    """Per method configuration (`variant`): mean Avg. Gap and time ratio; the best within the time
    limit, with the overrides it ran with when it had any."""
    candidates = {}
    for variant in sorted({row["variant"] for row in rows}):
        mine = [row for row in rows if row["variant"] == variant]
        gap, ratio = _mean(r["avg_gap_pp"] for r in mine), _mean(r["time_ratio"] for r in mine)
        candidates[variant] = {
            "avg_gap_pp": gap, "time_ratio": ratio, "runs": len(mine),
            "within_time_limit": ratio is None or ratio <= max_time_ratio,
        }  # fmt: skip
    eligible = [(c["avg_gap_pp"], c["time_ratio"] or 0.0, v) for v, c in candidates.items()
                if c["within_time_limit"] and c["avg_gap_pp"] is not None]
    if not eligible:
        return None
    gap, _, best = min(eligible)
    chosen = next(row for row in rows if row["variant"] == best)
    entry = {"method": chosen["method"], "avg_gap_pp": gap, "time_ratio": candidates[best]["time_ratio"],
             "runs": candidates[best]["runs"], "candidates": candidates}
    if chosen["overrides"]:
        entry["overrides"] = chosen["overrides"]
    return entry


def choice_table_from_runs(
    run_dir: str | Path, max_time_ratio: float = DEFAULT_MAX_TIME_RATIO, model: str | None = None
) -> dict[str, Any]:
    """A method-choice table (the shipped file's format) from a benchmark run folder.

    For every (task, scenario) with finished evaluations: the method with the lowest mean Avg.
    Gap to Retrain among those whose mean time / Retrain time is at most `max_time_ratio`
    (References Original and Retrain are not candidates). Each configuration of a method
    (`method_overrides`) is its own candidate, and the chosen one's overrides come with it. Runs
    scored against a step-matched Retrain count only in a folder that has no other kind. With
    `model`, only that backbone's runs count when the folder has any for the task.
    """
    run_dir = Path(run_dir).expanduser()
    rows, grid = _candidate_rows(run_dir)
    choices: dict[str, dict[str, Any]] = {}
    for task in sorted({row["task"] for row in rows}):
        in_task = [row for row in rows if row["task"] == task]
        if model is not None and any(row["model"] == model for row in in_task):
            in_task = [row for row in in_task if row["model"] == model]
        for scenario in sorted({row["scenario"] for row in in_task}):
            best = _rank([row for row in in_task if row["scenario"] == scenario], max_time_ratio)
            if best is not None:
                best["models"] = sorted({row["model"] for row in in_task if row["scenario"] == scenario})
                choices.setdefault(task, {})[scenario] = best
    return {
        "format_version": CHOICE_FORMAT_VERSION,
        "provenance": {
            "status": "benchmark",
            "run_dir": str(run_dir.resolve()),
            "preset": grid.get("name"),
            "data": grid.get("data"),
            "seeds": grid.get("seeds"),
            "ratios": grid.get("ratios"),
            "max_time_ratio": max_time_ratio,
            "model_filter": model,
            "criterion": "lowest mean Avg. Gap to Retrain (pp) among methods whose mean time / Retrain time "
            f"<= {max_time_ratio:g}",
        },
        "regenerate": REGENERATE_HINT,
        "choices": choices,
    }


REGENERATE_HINT = (
    "speech-unlearn forget --auto-from RUN_DIR --export-choice "
    "src/speech_unlearning/experiments/method_choice.json (RUN_DIR: a finished `speech-unlearn bench` run folder)"
)


def choose_method(
    name: str,
    task: str,
    kinds: Iterable[str],
    auto_from: str | Path | None = None,
    model: str | None = None,
    table_path: str | Path = CHOICE_FILE,
) -> MethodChoice:
    """The method to run: `name` itself, or for "auto" the benchmark's choice for the request's
    scenario and task (from `auto_from`'s results when given, else the shipped table)."""
    if name != "auto":
        return MethodChoice(name, "user")
    scenario = request_scenario(kinds, task)
    if auto_from is None:
        return choose_from_table(load_choice_table(table_path), task, scenario, f"shipped table {table_path}")
    table = choice_table_from_runs(auto_from, model=model)
    return choose_from_table(table, task, scenario, f"benchmark runs {auto_from}")
