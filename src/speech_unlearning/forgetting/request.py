"""One deletion request, resolved to training recordings of one corpus.

Two shapes of request reach this module, and both end as `UnlearningSplit`s:

- `DeletionRequest` (`forget`): speakers, keywords and files (utterance ids or audio paths),
  with an optional id and a free-text reason, from command-line flags or a YAML file:

      id: REQ-2024-0042              # optional; default "req-" + 12 hex digits of the names' hash
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
- `UnlearnRequest` (`unlearn`): a seeded random ratio, classes, speakers, or a saved split file;
  `UnlearnRequest.resolve` draws the split.

The request id depends on the names asked for only: the free-text reason is recorded in the
audit, but a new reason does not make a new request.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml

from ..config import ConfigError, require
from ..data.corpus import Corpus, CorpusError
from ..data.splits import UnlearningSplit, corpus_path, listing as name_listing
from ..io import sha256_json

REQUEST_KINDS: tuple[str, ...] = ("keyword", "speaker", "files")  # also the priority of overlapping items
REQUEST_FILE_KEYS: tuple[str, ...] = ("id", "reason", "speakers", "keywords", "files", "files_from")
SPLIT_KIND_OF = {"keyword": "class", "speaker": "speaker", "files": "files"}
UNKNOWN_CLASS = "_unknown_"  # where Speech Commands puts every word outside its keyword list
SHOWN_ITEMS = 20  # how many culprits an error message lists before abbreviating


def listing(items: Sequence[str], limit: int = SHOWN_ITEMS) -> str:
    """'a, b, c' or 'a, b, ... (and 40 more)' for messages (data.splits.listing, longer)."""
    return name_listing(items, limit)


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

    def names(self) -> dict[str, list[str]]:
        """Every name asked for, sorted per kind: what identifies the request."""
        return {"speakers": sorted(self.speakers), "keywords": sorted(self.keywords), "files": sorted(self.files)}

    def canonical(self) -> dict[str, Any]:
        """What the request hash covers: its id, reason and every name asked for (sorted)."""
        return {"id": self.request_id, "reason": self.reason, **self.names()}

    @property
    def sha256(self) -> str:
        return sha256_json(self.canonical())

    @property
    def effective_id(self) -> str:
        """The given id, else "req-" + 12 hex digits of the names' hash (the reason is free text:
        rewording it must not turn the same request into a new one)."""
        return self.request_id or f"req-{sha256_json(self.names())[:12]}"


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

    def forget_split(self, corpus: Corpus, request_id: str) -> UnlearningSplit:
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
        return [component.forget_split(corpus, self.request.effective_id) for component in self.components]

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
            problems.append(Unresolved("keyword", keyword, _not_a_class(corpus, keyword)))
            continue
        positions = _training_positions(corpus, corpus.labels == corpus.label_names.index(keyword))
        if len(positions) == 0:
            problems.append(Unresolved("keyword", keyword, "has no training recordings"))
        else:
            found[keyword] = positions
    return found, problems


def _not_a_class(corpus: Corpus, keyword: str) -> str:
    """Why `keyword` is no class; says so when the corpus folds words outside its list into _unknown_."""
    text = f"not a class of {corpus.name}; classes: {listing(corpus.label_names, 12)}"
    if UNKNOWN_CLASS in corpus.label_names:
        text += (
            f". Words outside the keyword list are folded into {UNKNOWN_CLASS}, so {keyword!r} cannot be forgotten "
            f"on its own: forget its recordings with --files, or the whole class with --keyword {UNKNOWN_CLASS}"
        )
    return text


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


# ---------------------------------------------------------------------------------------------
# `unlearn`'s request: a ratio, classes, speakers or a saved split

UNLEARN_REQUEST_KINDS: tuple[str, ...] = ("ratio", "classes", "speakers", "split_file")


@dataclass(frozen=True)
class UnlearnRequest:
    """What `unlearn` was asked to forget: one of a seeded random share of the training set,
    classes, speakers, or the forget set of a saved split file."""

    kind: str  # one of UNLEARN_REQUEST_KINDS
    ratio: float | None = None
    names: tuple[str, ...] = ()
    path: Path | None = None

    def __post_init__(self) -> None:
        require(self.kind in UNLEARN_REQUEST_KINDS, "kind", f"must be one of {', '.join(UNLEARN_REQUEST_KINDS)}")
        if self.kind == "ratio":
            require(self.ratio is not None and 0 < self.ratio < 1, "--forget-ratio",
                    f"{self.ratio}: must be strictly between 0 and 1")
        if self.kind in ("classes", "speakers"):
            require(bool(self.names), self.kind, "names nothing to forget")
        if self.kind == "split_file" and (self.path is None or not Path(self.path).is_file()):
            raise FileNotFoundError(f"--forget-split {self.path}: file not found")

    def resolve(self, corpus: Corpus, seed: int) -> UnlearningSplit:
        """The split this request asks for (the ratio's draw is seeded by `seed`)."""
        from ..data.splits import class_split, load_forget_split, sample_split, speaker_split

        if self.kind == "ratio":
            return sample_split(corpus, self.ratio, seed)
        if self.kind == "classes":
            unknown = [name for name in self.names if name not in corpus.label_names]
            if unknown:
                raise CorpusError(f"--forget-class {unknown[0]!r}: {_not_a_class(corpus, unknown[0])}")
            return class_split(corpus, list(self.names))
        if self.kind == "speakers":
            return speaker_split(corpus, list(self.names))
        return load_forget_split(self.path, corpus)
