"""The training loop on synthetic data: learning, determinism, early stopping, budgets, parity."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speech_unlearning.config import ConfigError, from_mapping
from speech_unlearning.models.base import SpeechClassifier
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.inference import (
    accuracy,
    compute_embeddings,
    evaluate,
    evaluate_loss,
    per_sample_loss,
    predict_logits,
)
from speech_unlearning.training.optim import OPTIMIZERS, make_optimizer, make_scheduler
from speech_unlearning.training.runtime import Budget, seed_everything, select_device
from speech_unlearning.training.steps import RunningSums, Stepper
from speech_unlearning.training.trainer import fit, step_matched_epochs

NUM_CLASSES = 3
FEATURE_SHAPE = (4, 6)  # a tiny "(n_mels, frames)" input


class TinyClassifier(SpeechClassifier):
    """Flatten -> linear -> ReLU -> dropout, then the shared linear head."""

    def __init__(self, num_classes: int = NUM_CLASSES, hidden: int = 16, step_delay: float = 0.0):
        super().__init__(embedding_dim=hidden, num_classes=num_classes)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(FEATURE_SHAPE), hidden), nn.ReLU(), nn.Dropout(0.1))
        self.step_delay = step_delay  # simulates a slow model for the budget test

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.training and self.step_delay:
            time.sleep(self.step_delay)
        return self.body(inputs)  # (B, hidden)


def make_model(seed: int = 0, **options) -> TinyClassifier:
    seed_everything(seed)
    return TinyClassifier(**options)


def blobs(num_examples: int = 240, seed: int = 0, spread: float = 0.6) -> ArrayData:
    """Gaussian clusters, one per class: linearly separable up to `spread` noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(NUM_CLASSES,) + FEATURE_SHAPE).astype(np.float32) * 2
    labels = rng.integers(0, NUM_CLASSES, size=num_examples)
    features = centres[labels] + spread * rng.normal(size=(num_examples,) + FEATURE_SHAPE).astype(np.float32)
    return ArrayData(features.astype(np.float32), labels.astype(np.int64), np.arange(num_examples))


def split(data: ArrayData, train_fraction: float = 0.75) -> tuple[ArrayData, ArrayData]:
    cut = int(len(data) * train_fraction)
    return data.subset(np.arange(cut)), data.subset(np.arange(cut, len(data)))


def quick_config(**overrides) -> TrainConfig:
    values = dict(epochs=8, batch_size=32, lr=1e-2, patience=0, progress=False, device="cpu", threads=1)
    values.update(overrides)
    return TrainConfig(**values)


def test_fit_lowers_the_loss_and_raises_accuracy():
    train, validation = split(blobs())
    model = make_model()
    before = evaluate(model, validation)
    result = fit(model, train, validation, quick_config())
    after = evaluate(model, validation)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert after.loss < before.loss
    assert after.accuracy > before.accuracy
    assert after.accuracy >= 0.9
    assert result.epochs_run == 8 and not result.stopped_early and not result.budget_exhausted
    assert [row["epoch"] for row in result.history] == list(range(1, 9))
    assert all({"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"} <= set(row) for row in result.history)


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not():
    train, validation = split(blobs())

    def train_once(seed: int) -> dict[str, torch.Tensor]:
        model = make_model(seed=0)  # same initial weights; `seed` drives shuffling and dropout
        fit(model, train, validation, quick_config(epochs=3, seed=seed))
        return model.state_dict()

    first, second, other = train_once(1), train_once(1), train_once(2)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_early_stopping_stops_and_restores_the_best_weights():
    train, _ = split(blobs())
    # Validation = the training rows with every label shifted: the better the model fits the
    # training labels, the worse it scores here, so the best epoch comes first and patience runs out.
    shifted = ArrayData(train.features, (train.labels + 1) % NUM_CLASSES, train.indices)
    model = make_model()
    result = fit(model, train, shifted, quick_config(epochs=30, patience=2))
    assert result.stopped_early and not result.budget_exhausted
    assert result.epochs_run == result.best_epoch + 2 < 30
    best_row = result.history[result.best_epoch - 1]
    restored = evaluate(model, shifted)
    assert restored.accuracy == pytest.approx(best_row["val_accuracy"], abs=1e-12)
    assert restored.loss == pytest.approx(best_row["val_loss"], rel=1e-6)
    assert restored.loss != pytest.approx(result.history[-1]["val_loss"], rel=1e-6)


def test_a_falling_validation_loss_keeps_training_while_accuracy_stalls():
    # The validation history of an FSDD keyword model whose accuracy stalled for three epochs
    # while its loss still fell; stopping on accuracy alone ended it at half its schedule.
    from speech_unlearning.training.inference import Evaluation
    from speech_unlearning.training.trainer import _BestWeights

    model = make_model()
    tracker = _BestWeights(patience=3)
    history = [(0.38, 1.63), (0.69, 1.17), (0.68, 0.98), (0.63, 0.93), (0.66, 0.95)]
    for epoch, (accuracy_value, loss) in enumerate(history, start=1):
        tracker.update(epoch, Evaluation(loss=loss, accuracy=accuracy_value), model)
    assert not tracker.out_of_patience and tracker.epochs_since_best == 1
    assert tracker.best_epoch == 2  # the weights kept are still chosen on accuracy
    tracker.update(6, Evaluation(loss=0.67, accuracy=0.77), model)
    assert tracker.best_epoch == 6 and tracker.epochs_since_best == 0
    for epoch in (7, 8, 9):  # neither score improves: patience runs out
        tracker.update(epoch, Evaluation(loss=0.70, accuracy=0.70), model)
    assert tracker.out_of_patience and tracker.best_epoch == 6


def test_without_validation_all_epochs_run_and_the_last_weights_stay():
    train, _ = split(blobs())
    result = fit(make_model(), train, None, quick_config(epochs=3, patience=1))
    assert result.epochs_run == result.best_epoch == 3
    assert not result.stopped_early
    assert "val_accuracy" not in result.history[0]


def test_max_seconds_stops_training_and_is_recorded():
    train, validation = split(blobs())
    model = make_model(step_delay=0.02)
    result = fit(model, train, validation, quick_config(epochs=1000, max_seconds=0.3))
    assert result.budget_exhausted and not result.stopped_early
    assert result.epochs_run < 1000
    assert 0.3 <= result.seconds < 3.0
    assert result.steps >= 1


def test_a_budget_that_outlasts_training_is_not_reported_as_exhausted():
    train, validation = split(blobs())
    result = fit(make_model(), train, validation, quick_config(epochs=2, max_seconds=600.0))
    assert result.epochs_run == 2 and not result.budget_exhausted


def test_loss_hook_sees_each_training_row_once_per_epoch_with_its_label():
    train, _ = split(blobs())
    seen: list[np.ndarray] = []

    def recording_loss(logits, labels, corpus_indices):
        assert np.array_equal(labels.numpy(), train.labels[corpus_indices])
        seen.append(corpus_indices.copy())
        return per_sample_loss(logits, labels)

    fit(make_model(), train, None, quick_config(epochs=1), loss_fn=recording_loss)
    assert sorted(np.concatenate(seen).tolist()) == sorted(train.indices.tolist())


def test_a_zero_loss_hook_leaves_the_weights_unchanged():
    train, _ = split(blobs())
    model = make_model()
    initial = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    fit(model, train, None, quick_config(epochs=2, weight_decay=0.0), loss_fn=lambda logits, labels, rows: 0 * logits.sum(1))
    assert all(torch.equal(initial[name], tensor) for name, tensor in model.state_dict().items())


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_per_sample_loss_matches_torch_cross_entropy(label_smoothing):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=generator)
    labels = torch.randint(0, 5, (7,), generator=generator)
    ours = per_sample_loss(logits, labels, label_smoothing)
    reference = F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
    assert ours.shape == (7,)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(ours.mean(), F.cross_entropy(logits, labels, label_smoothing=label_smoothing))


def test_evaluation_helpers_agree_with_a_direct_forward_pass_and_restore_the_mode():
    data = blobs(num_examples=50)
    model = make_model()
    model.train()
    logits = predict_logits(model, data, batch_size=16)
    embeddings = compute_embeddings(model, data, batch_size=16)
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        inputs = torch.from_numpy(data.features)
        expected_logits = model(inputs).numpy()
        expected_embeddings = model.embed(inputs).numpy()
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embeddings, expected_embeddings, rtol=1e-5, atol=1e-6)
    assert accuracy(model, data) == pytest.approx(float(np.mean(expected_logits.argmax(1) == data.labels)))
    expected_loss = F.cross_entropy(torch.from_numpy(expected_logits), torch.from_numpy(data.labels)).item()
    assert evaluate_loss(model, data) == pytest.approx(expected_loss, rel=1e-5)


def test_evaluation_of_empty_data_is_empty_or_nan():
    empty = blobs(num_examples=10).subset(np.array([], dtype=np.int64))
    model = make_model()
    assert predict_logits(model, empty).shape == (0, NUM_CLASSES)
    assert compute_embeddings(model, empty).shape == (0, 16)
    assert math.isnan(accuracy(model, empty))


def test_step_matched_epochs_give_the_originals_number_of_steps():
    # The embedded keyword corpus: 2455 training clips, 77 steps of 32 an epoch, 770 in 10 epochs.
    assert step_matched_epochs(10, 2455, 2209, 32) == 11  # 10 % forgotten: 69 steps an epoch, 11 epochs = 759
    assert step_matched_epochs(10, 2455, 2332, 32) == 11  # 5 %: 73 an epoch, 803 steps is nearer than 730
    assert step_matched_epochs(10, 2455, 2430, 32) == 10  # 1 %: 76 an epoch; the standard Retrain
    assert step_matched_epochs(1, 1000, 10, 32) == 32  # a tiny Dr is one step an epoch
    assert step_matched_epochs(4, 100, 100, 32) == 4
    assert step_matched_epochs(2, 66, 33, 32) == 6  # as training counts them: a trailing batch of one is no step


def test_fit_rejects_an_empty_training_set():
    empty = blobs(num_examples=10).subset(np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="empty"):
        fit(make_model(), empty, None, quick_config())


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("batch_size", 0),
        ("lr", 0.0),
        ("weight_decay", -1.0),
        ("optimizer", "lion"),
        ("momentum", 1.0),
        ("patience", -1),
        ("seed", -3),
        ("device", "gpu0"),
        ("max_seconds", 0.0),
        ("label_smoothing", 1.0),
        ("eval_batch_size", 0),
        ("log_every", 0),
        ("schedule", "step"),
        ("warmup_ratio", 1.0),
        ("max_grad_norm", -1.0),
        ("threads", -1),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        TrainConfig(**{field: value})


def test_config_from_strings_converts_types_and_rejects_unknown_keys():
    config = from_mapping(TrainConfig, {"epochs": "3", "lr": "1e-4", "max_seconds": "none", "progress": "false"})
    assert (config.epochs, config.lr, config.max_seconds, config.progress) == (3, 1e-4, None, False)
    with pytest.raises(ConfigError, match="'epoch'"):
        from_mapping(TrainConfig, {"epoch": "3"})


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_takes_a_step_that_lowers_the_loss(name):
    data = blobs(num_examples=64)
    model = make_model()
    model.eval()  # no dropout, so the two losses are comparable
    inputs, labels = torch.from_numpy(data.features), torch.from_numpy(data.labels)
    optimizer = make_optimizer(model.parameters(), name, lr=1e-2, weight_decay=0.0)
    before = per_sample_loss(model(inputs), labels).mean()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = per_sample_loss(model(inputs), labels).mean()
    assert after < before


def test_unknown_optimizer_lists_the_valid_names():
    with pytest.raises(KeyError, match="lion.*adamw"):
        make_optimizer(make_model().parameters(), "lion", lr=1e-3, weight_decay=0.0)


@pytest.mark.parametrize("schedule, final", [("constant", 1.0), ("linear", 0.0), ("cosine", 0.0)])
def test_schedules_warm_up_then_follow_their_shape(schedule, final):
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = make_scheduler(optimizer, schedule, total_steps=20, warmup_steps=4)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:5] == sorted(rates[:5]) and rates[0] < rates[4] == 1.0
    assert optimizer.param_groups[0]["lr"] == pytest.approx(final, abs=1e-9)


def test_budget():
    assert not Budget(None).exhausted() and Budget(None).remaining == math.inf
    budget = Budget(0.05)
    assert not budget.exhausted()
    time.sleep(0.06)
    assert budget.exhausted() and budget.remaining == 0.0
    with pytest.raises(ValueError, match="positive"):
        Budget(0)


def test_the_shared_step_runs_its_hooks_in_order_clips_and_stops_at_the_step_budget():
    layer = nn.Linear(3, 1)
    calls: list[str] = []
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    stepper = Stepper(optimizer, layer.parameters(), Budget(None, steps=2), max_grad_norm=1e-3,
                      before_step=lambda: calls.append("before"), after_step=lambda: calls.append("after"))
    with stepper:
        loss = (layer(torch.full((4, 3), 100.0)) ** 2).mean()
        weights = layer.weight.detach().clone()
        assert stepper.step(loss) is False
        # The huge gradient was clipped to norm 1e-3 before SGD (lr 0.1) used it.
        assert torch.linalg.vector_norm(layer.weight.detach() - weights) < 1.01e-4
        assert stepper.step(layer(torch.ones(2, 3)).sum()) is True and stepper.budget_exhausted
    assert calls == ["before", "after"] * 2 and stepper.steps == 2


def test_running_sums_keep_a_mean_per_name_and_nan_for_none():
    sums = RunningSums(torch.float64)
    sums.add("loss", torch.tensor([1.0, 2.0]))
    sums.add("loss", torch.tensor([3.0]))
    assert sums.mean("loss") == 2.0 and sums.count("loss") == 3 and sums.sums["loss"].dtype == torch.float64
    assert math.isnan(sums.mean("correct")) and sums.names() == ["loss"]


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda'.*not available"):
            select_device("cuda")


def test_seed_everything_returns_a_reproducible_generator():
    first = torch.randperm(10, generator=seed_everything(5))
    global_draw = torch.rand(3)
    second = torch.randperm(10, generator=seed_everything(5))
    assert torch.equal(first, second)
    seed_everything(5)
    assert torch.equal(torch.rand(3), global_draw)


# --------------------------------------------------------------------------------------------
# Recipes

from speech_unlearning.models.registry import model_info, model_names  # noqa: E402
from speech_unlearning.training.recipes import (  # noqa: E402
    checkpoint_metadata,
    corpus_arrays,
    default_model_for,
    default_train_config,
    train_original,
)

TRANSFORMER_FAMILIES = ("whisper", "wav2vec2", "hubert")
TINY_XVECTOR = {"channels": 16, "stats_channels": 32, "embedding_dim": 16}  # seconds per epoch on FSDD


@pytest.mark.parametrize("recipe", ["converged", "early-stop"])
@pytest.mark.parametrize("task", ["kws", "sid"])
@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_has_a_valid_recipe(task, name, recipe):
    config = default_train_config(task, name, recipe)
    assert isinstance(config, TrainConfig)
    if model_info(name).family in TRANSFORMER_FAMILIES:  # fine-tuning a pretrained backbone
        assert config.lr <= 5e-5 and config.epochs <= 10 and config.warmup_ratio > 0
    else:  # training a small model from scratch
        assert config.lr >= 1e-3
        # early-stop waits on validation; converged runs its whole, longer schedule
        assert config.patience > 0 if recipe == "early-stop" else config.patience == 0
    if recipe == "converged" and model_info(name).family not in TRANSFORMER_FAMILIES:
        assert config.epochs > default_train_config(task, name, "early-stop").epochs


def test_default_models_exist_and_unknown_names_are_listed():
    assert default_model_for("kws") == "kws-resnet" and default_model_for("sid") == "sid-xvector"
    with pytest.raises(ValueError, match="asr"):
        default_model_for("asr")
    with pytest.raises(KeyError, match="no-such-model.*kws-resnet"):
        default_train_config("kws", "no-such-model")


def test_train_original_trains_on_the_given_rows_and_measures_every_split(fsdd_sid, cache_dir):
    retain = fsdd_sid.indices("train")[::2]  # e.g. Dr for Retrain
    config = TrainConfig(epochs=2, patience=0, progress=False, threads=1)
    model, result, metrics = train_original(
        fsdd_sid, "sid-xvector", seed=1, cache_dir=cache_dir, config=config, train_indices=retain,
        progress=False, model_options=TINY_XVECTOR,
    )
    assert result.examples == 2 * len(retain) and result.epochs_run == 2
    assert set(metrics) == {"train_accuracy", "validation_accuracy", "test_accuracy", "train_seconds", "train_test_gap"}
    assert metrics["train_test_gap"] == pytest.approx(metrics["train_accuracy"] - metrics["test_accuracy"])
    features, spec = corpus_arrays(fsdd_sid, "logmel", cache_dir, progress=False)
    assert metrics["train_accuracy"] == pytest.approx(accuracy(model, ArrayData(features, fsdd_sid.labels, retain)))
    assert metrics["test_accuracy"] == pytest.approx(
        accuracy(model, ArrayData(features, fsdd_sid.labels, fsdd_sid.indices("test")))
    )
    assert metrics["test_accuracy"] > 0.35  # well above the 1/6 of chance

    metadata = checkpoint_metadata(fsdd_sid, spec, model, config, metrics, corpus_spec="fsdd", train_result=result)
    assert metadata["corpus"] == {"name": "fsdd-sid", "task": "sid", "fingerprint": fsdd_sid.fingerprint, "spec": "fsdd"}
    assert metadata["model"] == model.build_args and metadata["history"] == [] and metadata["split"] is None
    assert metadata["label_names"] == list(fsdd_sid.label_names) and metadata["feature_spec"]["n_mels"] == spec.n_mels
    assert metadata["train_config"]["epochs"] == 2 and metadata["training"]["epochs_run"] == 2
    json.dumps(metadata)  # the checkpoint layer stores it as JSON


@pytest.mark.parametrize("rows, message", [(np.array([-1, 2]), "out of range"), (np.array([], dtype=np.int64), "empty"),
                                            (np.array([0.5]), "1-D array")])
def test_train_original_rejects_bad_train_indices(fsdd_sid, cache_dir, rows, message):
    config = TrainConfig(epochs=1, progress=False)
    with pytest.raises(ValueError, match=message):
        train_original(fsdd_sid, "sid-xvector", 0, cache_dir, config=config, train_indices=rows, progress=False)


PRELOAD_PROBE = """
import sys
import torch
from speech_unlearning.training.optim import make_optimizer, preload_optimizer_imports

if sys.argv[1] == "preload":
    preload_optimizer_imports()
before = set(sys.modules)
make_optimizer(torch.nn.Linear(2, 2).parameters(), "adamw", 1e-3, 0.0)
print(len(set(sys.modules) - before))
"""


def modules_imported_by_first_optimizer(preload: bool) -> int:
    """How many modules building the first optimiser of a fresh process imports."""
    argv = [sys.executable, "-c", PRELOAD_PROBE, "preload" if preload else "cold"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_preload_leaves_nothing_for_the_first_timed_optimizer_to_import():
    """`fit` and `unlearn` call the preload before their clocks start, so the first timed run of a
    worker process is not charged for torch's lazy imports."""
    if modules_imported_by_first_optimizer(preload=False) == 0:
        pytest.skip("this torch builds its first optimiser without lazy imports: nothing to preload")
    assert modules_imported_by_first_optimizer(preload=True) == 0
