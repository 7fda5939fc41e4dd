"""`apply`: the one place a deletion is applied to a model, for every tool.

`forget`, `unlearn` and the benchmark's unlearn stage all come here, and only here is the method
engine (`methods.unlearn`) called. `apply` takes the model and what to forget (corpus positions),
removes from the retain set both these and everything earlier requests forgot (the checkpoint's
history, in any of its formats), runs the method within the budget, and says whether the weights
changed at all. The method's config is parsed once (`MethodSpec.parse`), where the arguments are
checked, and handed to the engine as parsed.

`load_subject` loads a checkpoint with its corpus and features for `forget` and `unlearn`: the
corpus must carry the checkpoint's labels and feature spec, and its fingerprint must equal the
recorded one unless the caller allows another version of the corpus.

Retrain is a method like the others: `--verify-retrain` runs it through `apply` too, so the
reference starts where the Original started (`methods.base.starting_model_like`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from torch import nn

from ..data.corpus import Corpus, CorpusError
from .history import (
    BudgetChoice,
    EarlierRequest,
    earlier_requests,
    feature_spec_of,
    forgotten_positions,
    train_config_of,
)

if TYPE_CHECKING:
    from ..data.features import FeatureSpec


@dataclass(frozen=True)
class MethodSpec:
    """A method name with its settings, parsed and checked once."""

    name: str
    overrides: Mapping[str, Any]
    parsed: tuple[Any, Any]  # (method config, SuperLoss config or None)

    @classmethod
    def parse(cls, name: str, overrides: Mapping[str, Any] | None = None) -> "MethodSpec":
        """ConfigError naming an unknown method or setting, before any data is loaded."""
        from ..methods import parse_method_config, split_method_name

        method_class, with_superloss = split_method_name(name)
        values = dict(overrides or {})
        return cls(name, values, parse_method_config(method_class, with_superloss, values, name))


@dataclass
class Subject:
    """A checkpoint ready to unlearn from: model, metadata, corpus, features and earlier requests."""

    model: nn.Module
    metadata: dict
    corpus: Corpus
    corpus_spec: str
    features: np.ndarray
    earlier: list[EarlierRequest]
    path: Path | None = None

    @property
    def feature_spec(self) -> FeatureSpec:
        return feature_spec_of(self.metadata)

    @property
    def earlier_ids(self) -> set[str]:
        return {i for request in self.earlier for i in request.forget_ids}


def check_corpus_version(metadata: Mapping[str, Any], corpus: Corpus, where: str, allow_other: bool) -> None:
    """CorpusError when `corpus` is not the version the checkpoint was trained on (unless allowed)."""
    recorded = (metadata.get("corpus") or {}).get("fingerprint")
    if recorded and recorded != corpus.fingerprint and not allow_other:
        raise CorpusError(
            f"{where}: corpus {corpus.name} has fingerprint {corpus.fingerprint[:12]}..., but the checkpoint was "
            f"trained on {recorded[:12]}... (another version or another corpus with the same labels); pass "
            "--allow-other-corpus to use it anyway"
        )


def load_subject(checkpoint: Path, data_spec: str | None, cache_dir: Path | None, allow_other_corpus: bool = False,
                 progress: bool = False, device: str = "auto") -> Subject:
    """Load `checkpoint`, its corpus (`data_spec`, else the recorded spec) and features; read its history."""
    from ..data.loaders import load_corpus
    from ..data.features import FeatureSpec, feature_spec_for, load_features
    from ..models.checkpoint import CheckpointError, load_checkpoint, read_metadata
    from ..training.runtime import select_device

    metadata = read_metadata(checkpoint)
    recorded = metadata.get("corpus") or {}
    spec = data_spec or recorded.get("spec")
    if not spec:
        raise CorpusError(f"checkpoint {checkpoint} does not record its corpus spec; pass --data SPEC")
    if recorded.get("task") not in ("kws", "sid"):
        raise CorpusError(f"checkpoint {checkpoint} does not record its task (kws or sid)")
    for key in ("label_names", "feature_spec"):
        if key not in metadata:
            raise CheckpointError(f"checkpoint {checkpoint}: metadata lacks {key!r}")
    corpus = load_corpus(spec, recorded["task"], cache_dir=cache_dir)
    kind = metadata["feature_spec"].get("kind", "logmel")
    model, metadata = load_checkpoint(checkpoint, expect_label_names=corpus.label_names,
                                      expect_feature_spec=feature_spec_for(corpus, kind))  # fmt: skip
    check_corpus_version(metadata, corpus, f"checkpoint {checkpoint}", allow_other_corpus)
    earlier = earlier_requests(metadata, corpus, f"checkpoint {checkpoint}")
    features = load_features(corpus, FeatureSpec(**metadata["feature_spec"]), cache_dir=cache_dir, progress=progress)
    return Subject(model.to(select_device(device)), metadata, corpus, spec, features, earlier, checkpoint)


@dataclass
class Applied:
    """What applying a deletion produced."""

    result: Any  # methods.UnlearnResult
    forget: np.ndarray  # corpus positions unlearned now
    retain: np.ndarray  # corpus positions kept (training set minus now and earlier forgotten)
    budget: BudgetChoice
    weights_changed: bool


def retain_positions(corpus: Corpus, forget: np.ndarray, earlier: Sequence[EarlierRequest]) -> np.ndarray:
    """The training set minus `forget` and minus every item an earlier request forgot."""
    gone = np.union1d(np.asarray(forget, dtype=np.int64), forgotten_positions(earlier, corpus))
    return np.setdiff1d(corpus.indices("train"), gone)


def apply(
    model: nn.Module,
    corpus: Corpus,
    features: np.ndarray,
    forget: np.ndarray,
    method: MethodSpec,
    budget: BudgetChoice,
    seed: int = 0,
    earlier: Sequence[EarlierRequest] = (),
    train_config: Any = None,
    retain: np.ndarray | None = None,
    budget_steps: int | None = None,
    progress: bool = False,
    feature_spec: FeatureSpec | None = None,
) -> Applied:
    """Unlearn the corpus rows `forget` from a copy of `model` with `method` (never modifies `model`).

    The retain set is `retain` when given (the benchmark's split already excludes its forget
    set), else the training set minus `forget`; either way minus what `earlier` requests forgot.
    Validation data are the corpus's validation rows; `train_config` is the Original's recipe
    (Retrain needs it), and `feature_spec` the features' spec, from which the recipe's batch
    augmentation (if any) is rebuilt for Retrain.
    """
    from .. import methods  # looked up at call time, so one engine serves (and tests can watch it)
    from ..evaluation import is_no_op
    from ..training.data import ArrayData

    forget = np.asarray(forget, dtype=np.int64)
    if retain is None:
        retain = retain_positions(corpus, forget, earlier)
    else:
        retain = np.setdiff1d(retain, forgotten_positions(earlier, corpus))
    result = methods.unlearn(
        method.name, model, ArrayData(features, corpus.labels, forget), ArrayData(features, corpus.labels, retain),
        overrides=method.overrides, parsed=method.parsed, budget_seconds=budget.seconds, budget_steps=budget_steps,
        seed=seed, validation=ArrayData(features, corpus.labels, corpus.indices("validation")),
        train_config=train_config, progress=progress, augmenter=_augmenter(corpus, feature_spec),
    )  # fmt: skip
    return Applied(result, forget, retain, budget, not is_no_op(result.model, model))


def _augmenter(corpus: Corpus, feature_spec: FeatureSpec | None):
    """recipe -> the batch augmenter that recipe asks for on `corpus` (None without a feature spec)."""
    if feature_spec is None:
        return None
    from ..training.recipes import augmenter_for

    return lambda recipe: augmenter_for(corpus, recipe, feature_spec)[0]


def unlearn_subject(subject: Subject, forget: np.ndarray, method: MethodSpec, budget: BudgetChoice, seed: int,
                     progress: bool = False) -> Applied:
    """`apply` on a loaded checkpoint: its history's earlier requests and its recorded recipe."""
    return apply(subject.model, subject.corpus, subject.features, forget, method, budget, seed=seed,
                 earlier=subject.earlier, train_config=train_config_of(subject.metadata), progress=progress,
                 feature_spec=subject.feature_spec)
