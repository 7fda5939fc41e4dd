"""Every registered method (and every "+superloss" variant), on a small trained model.

The data are synthetic log-mel-shaped arrays with noisy class centres and the model a narrow
keyword CNN from the model registry, which, like the speech models, generalises imperfectly, so
forgetting and collateral damage both show within a few steps. Tests are parametrized over the
registry: a new method is tested here without any edit.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from torch import nn

from speech_unlearning.config import ConfigError
from speech_unlearning.methods import METHODS, describe_methods, method_names, unlearn
from speech_unlearning.methods.bad_teaching import BadTeaching
from speech_unlearning.methods import engine
from speech_unlearning.methods.base import (
    OBJECTIVE_QUANTITIES,
    Method,
    UnlearnContext,
    config_defaults,
    register_method,
    split_method_name,
)
from speech_unlearning.methods.streams import mixed_pass, paired_pass
from speech_unlearning.models.registry import create_model
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.inference import accuracy
from speech_unlearning.training.runtime import Budget
from speech_unlearning.training.trainer import fit, steps_per_epoch

ALL_NAMES = method_names(with_superloss=True)
NUM_CLASSES, SHAPE = 6, (8, 12)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread avoids intra-op synchronisation stalls on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class Setting:
    """A small trained keyword model, its recipe, and a class-unlearning split of its data.

    The model is the registry's res8-style CNN (narrow), trained on synthetic log-mel-shaped
    inputs with noisy class centres; like the speech models it generalises imperfectly, so
    forgetting and damage are both visible within a few steps.
    """

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        per_class = 60
        labels = np.repeat(np.arange(NUM_CLASSES), per_class)
        centres = rng.normal(size=(NUM_CLASSES, *SHAPE)).astype(np.float32)
        features = (centres[labels] + 1.5 * rng.normal(size=(len(labels), *SHAPE))).astype(np.float32)
        order = rng.permutation(len(labels))
        train, test = order[:288], order[288:]
        forget = np.sort(train[labels[train] == 0])
        retain = np.sort(train[labels[train] != 0])
        self.forget, self.retain, self.test = (ArrayData(features, labels, rows) for rows in (forget, retain, test))
        self.train_config = TrainConfig(epochs=10, batch_size=32, lr=3e-3, patience=0, progress=False)
        torch.manual_seed(0)
        self.model = create_model("kws-resnet", NUM_CLASSES, n_mels=SHAPE[0], channels=8, blocks=1)
        fit(self.model, ArrayData(features, labels, np.sort(train)), None, self.train_config)
        self.model.zero_grad(set_to_none=True)  # so a method's stray backward would show
        self.model.eval()

    def run(self, name: str, **options):
        options.setdefault("train_config", self.train_config)
        options.setdefault("validation", self.test)  # held-out data, as the benchmark passes its validation split
        return unlearn(name, self.model, self.forget, self.retain, **options)

    def run_scaled(self, name: str, **options):
        """Defaults, with every batch size divided by 4 (at least 8): this set has ~50 forget and
        ~240 retain items, a tenth of FSDD's, so that keeps the steps per epoch comparable."""
        method_class, _ = split_method_name(name)
        overrides = {
            key: max(8, value // 4)
            for key, value in config_defaults(method_class.config_class).items()
            if key.endswith("batch_size")
        }
        return self.run(name, overrides=overrides, **options)


@pytest.fixture(scope="module")
def setting() -> Setting:
    return Setting()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _assert_same_state(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


@pytest.mark.parametrize("name", ALL_NAMES)
def test_method_forgets_deterministically_and_leaves_the_original_alone(setting, name):
    original_state = _state(setting.model)
    before = accuracy(setting.model, setting.forget)
    first = setting.run_scaled(name, seed=3)
    second = setting.run_scaled(name, seed=3)
    # Class unlearning lowers the accuracy on the forgotten class.
    assert before > 0.75
    assert accuracy(first.model, setting.forget) < before - 0.1, first.log
    # Same seed, same weights, bit for bit.
    _assert_same_state(_state(first.model), _state(second.model))
    # The caller's model: same weights and buffers, same mode, no gradients left behind.
    _assert_same_state(original_state, _state(setting.model))
    assert not setting.model.training
    assert all(p.grad is None for p in setting.model.parameters())
    assert first.model is not setting.model
    assert first.steps > 0 and first.seconds > 0 and not first.budget_exhausted and not first.diverged
    assert first.name == name and first.to_metadata()["method"] == name
    # Uncapped, a run takes the steps its schedule plans (calibrated may stop early once Df sits at
    # its targets), and says how many that is.
    assert first.to_metadata()["planned_steps"] == first.planned_steps
    if name.startswith("calibrated"):
        assert 0 < first.steps <= first.planned_steps
    else:
        assert first.steps == first.planned_steps
    # Losses only carry the roles the method declares; "+superloss" really re-weights something.
    method_class, _ = split_method_name(name)
    if method_class.loss_roles:  # (Retrain's log is the training loop's history)
        logged_roles = {key[: -len("_loss")] for row in first.log for key in row if key.endswith("_loss")}
        assert logged_roles - {"penalty"} <= set(method_class.loss_roles)
    weighted = any(key.endswith("_sigma_mean") for row in first.log for key in row)
    assert weighted == name.endswith("+superloss")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_method_stops_at_its_time_budget(setting, name):
    budget = 0.3
    method_class, _ = split_method_name(name)
    fields = method_class.config_class.__dataclass_fields__
    overrides = {"epochs": 10_000} if "epochs" in fields else {}
    if "max_steps" in fields:
        overrides["max_steps"] = 1
    recipe = TrainConfig(epochs=10_000, batch_size=8, patience=0, progress=False)
    start = time.perf_counter()
    result = setting.run(name, overrides=overrides, budget_seconds=budget, train_config=recipe, seed=0)
    wall = time.perf_counter() - start
    assert result.seconds <= wall
    if result.budget_exhausted:
        assert budget <= result.seconds <= budget + 0.5, result.seconds
        assert result.steps < result.planned_steps  # capped: fewer steps than the schedule plans
    else:  # only a method with a fixed amount of work (SSD) may finish inside the budget
        assert "epochs" not in fields and result.seconds < budget


SHARED_LOOP_NAMES = [name for name in ALL_NAMES if split_method_name(name)[0].run is Method.run]


@pytest.mark.parametrize("name", SHARED_LOOP_NAMES)
def test_method_stops_at_its_step_budget_and_the_same_step_on_every_run(setting, name):
    """A step cap, unlike a time budget, cuts a run at the same weights whatever the machine's load."""
    fields = split_method_name(name)[0].config_class.__dataclass_fields__
    overrides = {"epochs": 10_000} if "epochs" in fields else {}
    first = setting.run(name, overrides=overrides, budget_steps=3, seed=0)
    second = setting.run(name, overrides=overrides, budget_steps=3, seed=0)
    if first.steps < 3:  # a schedule that ends by itself (calibrated when Df already sits where it should)
        assert not first.budget_exhausted
    else:
        assert first.steps == 3 and first.budget_exhausted
        # The cap is reported against the schedule it cut short.
        assert first.planned_steps == second.planned_steps > first.steps
    _assert_same_state(_state(first.model), _state(second.model))


def test_a_bad_step_budget_is_named(setting):
    with pytest.raises(ValueError, match="budget_steps"):
        setting.run("gradascent", budget_steps=0)


def test_retrain_never_predicts_the_forgotten_class(setting):
    result = setting.run("retrain", seed=5)
    assert accuracy(result.model, setting.forget) == 0.0  # a class never seen cannot be predicted
    assert accuracy(result.model, setting.retain) > 0.8


def test_a_step_matched_retrain_takes_the_originals_number_of_steps(setting):
    recipe = setting.train_config  # no early stopping (patience 0), so every planned step is taken
    originals_steps = recipe.epochs * steps_per_epoch(len(setting.forget) + len(setting.retain), recipe.batch_size)
    per_epoch = steps_per_epoch(len(setting.retain), recipe.batch_size)
    standard = setting.run("retrain", seed=5)
    matched = setting.run("retrain", seed=5, overrides={"match": "steps"})
    assert standard.steps == recipe.epochs * per_epoch < originals_steps  # 80 steps against the Original's 90
    assert matched.steps == round(originals_steps / per_epoch) * per_epoch == 88  # 11 whole epochs
    assert setting.run("retrain", seed=5, overrides={"match": "steps", "epochs": 2}).steps == 2 * per_epoch
    with pytest.raises(ConfigError, match="match"):
        setting.run("retrain", overrides={"match": "seconds"})


def test_names_and_descriptions_cover_the_registry():
    rows = {row["name"]: row for row in describe_methods()}
    for name in METHODS.names():
        assert rows[name]["summary"] and rows[name]["defaults"]
    assert "scrub+superloss" in ALL_NAMES and "ssd+superloss" not in ALL_NAMES
    assert "retrain+superloss" not in ALL_NAMES


def test_request_errors_name_the_culprit(setting):
    with pytest.raises(KeyError, match="valid names"):
        setting.run("no-such-method")
    with pytest.raises(ValueError, match="ssd.*per-sample"):
        setting.run("ssd+superloss")
    with pytest.raises(ConfigError, match="lr"):
        setting.run("finetune", overrides={"lr": "-1"})
    with pytest.raises(ValueError, match="both the forget and the retain"):
        unlearn("finetune", setting.model, setting.forget, setting.forget)
    with pytest.raises(ValueError, match="forget set is empty"):
        unlearn("finetune", setting.model, setting.forget.subset(np.arange(0)), setting.retain)
    with pytest.raises(ConfigError, match="TrainConfig"):
        unlearn("retrain", setting.model, setting.forget, setting.retain)


def _context(setting: Setting, seed: int = 0) -> UnlearnContext:
    return UnlearnContext(
        model=copy.deepcopy(setting.model), original=setting.model, forget=setting.forget, retain=setting.retain,
        validation=None, config=None, train_config=None, device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed), budget=Budget(None), seed=seed, num_classes=NUM_CLASSES,
    )


def test_paired_stream_covers_the_larger_set_and_reshuffles_the_smaller(setting):
    ctx = _context(setting)
    phase = paired_pass(ctx, forget_batch_size=8, retain_batch_size=25, loss=None)
    batches = list(phase.batches(ctx))
    expected_steps = max(-(-len(setting.retain) // 25), -(-len(setting.forget) // 8))
    assert len(batches) == phase.num_batches == expected_steps == -(-len(setting.retain) // 25)
    retain_rows = np.concatenate([b.retain.indices for b in batches])
    np.testing.assert_array_equal(np.sort(retain_rows), setting.retain.indices)
    forget_rows = np.concatenate([b.forget.indices for b in batches])
    size = len(setting.forget)
    passes = [forget_rows[i : i + size] for i in range(0, size * (len(forget_rows) // size), size)]
    assert len(passes) >= 1 and all(np.array_equal(np.sort(p), setting.forget.indices) for p in passes)
    if len(passes) > 1:
        assert not np.array_equal(passes[0], passes[1])  # a fresh order, not a replay


def test_bad_teaching_retain_subset_is_seeded_and_never_holds_forget_rows(setting):
    from speech_unlearning.methods.bad_teaching import BadTeachingConfig

    subsets = []
    for _ in range(2):
        ctx = _context(setting, seed=7)
        ctx.config = BadTeachingConfig()
        subsets.append(BadTeaching.draw_retain_subset(ctx).indices)
    np.testing.assert_array_equal(subsets[0], subsets[1])
    assert len(subsets[0]) == round(0.3 * len(setting.retain))
    assert not np.intersect1d(subsets[0], setting.forget.indices).size
    ctx = _context(setting)
    phase = mixed_pass(ctx, setting.retain.subset(np.arange(20)), 16, loss=None)
    batches = list(phase.batches(ctx))
    flags = torch.cat([b.is_forget for b in batches]).numpy()
    rows = np.concatenate([b.indices for b in batches])
    np.testing.assert_array_equal(flags, np.isin(rows, setting.forget.indices))
    assert flags.sum() == len(setting.forget) and (~flags).sum() == 20


# ---------------------------------------------------------------------------------------------
# What a method's objective reads (so reports can say which attacks it optimises itself)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_declares_what_its_own_objective_reads(name):
    method_class = METHODS.get(name)
    assert "objective_reads" in vars(method_class)  # stated by the class, not inherited
    assert set(method_class.objective_reads) <= OBJECTIVE_QUANTITIES.keys()
    rows = {row["name"]: row for row in describe_methods()}
    assert rows[name]["objective_reads"] == list(method_class.objective_reads)


def test_a_method_that_does_not_say_what_its_objective_reads_is_not_registered():
    with pytest.raises(TypeError, match="objective_reads"):
        register_method("undeclared")(type("Undeclared", (Method,), {"summary": "stub"}))
    with pytest.raises(TypeError, match="unknown objective_reads"):
        register_method("misdeclared")(type("Misdeclared", (Method,), {"objective_reads": ("svc_mia",)}))
    assert not {"undeclared", "misdeclared"} & set(METHODS.names())


def _first_forget_terms(monkeypatch, setting, name, forget, retain, validation) -> list[torch.Tensor]:
    """The forget-role per-sample losses of the first batch the engine reduces (before any step)."""
    captured: list[list[torch.Tensor]] = []
    reduce = engine._reduce

    def spy(ctx, terms, stats):
        captured.append([term.losses.detach().clone() for term in terms if term.role == "forget"])
        return reduce(ctx, terms, stats)

    monkeypatch.setattr(engine, "_reduce", spy)
    # A schedule that may end before its first step when Df already sits where it aims (calibrated) is
    # made to take it.
    fields = METHODS.get(name).config_class.__dataclass_fields__
    overrides = {"pull_tolerance": 0} if "pull_tolerance" in fields else {}
    unlearn(name, setting.model, forget, retain, overrides=overrides, validation=validation,
            train_config=setting.train_config, seed=0, budget_steps=1)
    monkeypatch.setattr(engine, "_reduce", reduce)
    return captured[0] if captured else []


def _same(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return len(first) == len(second) and all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("name", [n for n in METHODS.names() if METHODS.get(n).run is Method.run])
def test_a_methods_forget_loss_depends_on_what_it_declares_and_on_nothing_else(setting, monkeypatch, name):
    """Df's true labels change the first forget term exactly when the method declares "forget_loss",
    the held-out recordings exactly when it declares "heldout_loss"."""
    rng = np.random.default_rng(1)
    train = np.concatenate([setting.forget.indices, setting.retain.indices])
    chosen = rng.permutation(len(train))
    forget = ArrayData(setting.retain.features, setting.retain.labels, np.sort(train[chosen[:30]]))  # a sample split
    retain = ArrayData(setting.retain.features, setting.retain.labels, np.sort(train[chosen[30:]]))
    relabelled = forget.with_labels((setting.retain.labels + 1) % NUM_CLASSES)
    other_heldout = setting.test.subset(np.arange(len(setting.test) // 2))
    declared = set(METHODS.get(name).objective_reads)

    baseline = _first_forget_terms(monkeypatch, setting, name, forget, retain, setting.test)
    if "forget" in METHODS.get(name).loss_roles:
        assert baseline, "a method with a forget role trains on Df from its first step here"
    labels_changed = _first_forget_terms(monkeypatch, setting, name, relabelled, retain, setting.test)
    heldout_changed = _first_forget_terms(monkeypatch, setting, name, forget, retain, other_heldout)
    assert _same(baseline, labels_changed) == ("forget_loss" not in declared)
    assert _same(baseline, heldout_changed) == ("heldout_loss" not in declared)
