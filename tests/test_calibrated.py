"""The calibrated method's two promises, beyond what test_methods checks for every method.

- Class unlearning: the dropped class is never predicted again, only the head moves, and the
  remaining classes keep their accuracy.
- Sample unlearning: the forget losses rise to where held-out losses sit, and stay there even
  when the schedule runs far longer than needed (no overshoot, unlike gradient ascent).

The data are synthetic log-mel-shaped arrays with noisy class centres; the model is the
registry's narrow keyword CNN, trained long enough to memorise its training set (train 97 %,
held-out 66 %), so the gap that sample unlearning must close is there to see.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speech_unlearning.config import ConfigError
from speech_unlearning.methods import unlearn
from speech_unlearning.models.registry import create_model
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.inference import accuracy, evaluation_mode, per_sample_loss
from speech_unlearning.training.trainer import fit

NUM_CLASSES, SHAPE = 6, (8, 12)
DROPPED = 0


class Memoriser:
    """A small CNN trained to memorise 240 noisy examples; 120 held out."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.labels = np.repeat(np.arange(NUM_CLASSES), 60)
        centres = rng.normal(size=(NUM_CLASSES, *SHAPE)).astype(np.float32)
        self.features = (centres[self.labels] + 2.0 * rng.normal(size=(len(self.labels), *SHAPE))).astype(np.float32)
        order = rng.permutation(len(self.labels))
        self.train, self.heldout = np.sort(order[:240]), np.sort(order[240:])
        self.train_config = TrainConfig(epochs=30, batch_size=32, lr=3e-3, patience=0, progress=False)
        torch.manual_seed(0)
        self.model = create_model("kws-resnet", NUM_CLASSES, n_mels=SHAPE[0], channels=8, blocks=1)
        fit(self.model, self.data(self.train), None, self.train_config)
        self.model.eval()

    def data(self, rows: np.ndarray) -> ArrayData:
        return ArrayData(self.features, self.labels, rows)

    def losses(self, model, rows: np.ndarray) -> torch.Tensor:
        inputs, labels = torch.from_numpy(self.features[rows]), torch.from_numpy(self.labels[rows]).long()
        with evaluation_mode(model):
            return per_sample_loss(model(inputs), labels)

    def predictions(self, model, rows: np.ndarray) -> np.ndarray:
        with evaluation_mode(model):
            return model(torch.from_numpy(self.features[rows])).argmax(1).numpy()

    def unlearn(self, forget: np.ndarray, **overrides):
        retain = np.setdiff1d(self.train, forget)
        return unlearn("calibrated", self.model, self.data(forget), self.data(retain), overrides=overrides,
                       validation=self.data(self.heldout), train_config=self.train_config, seed=0)


@pytest.fixture(scope="module")
def memoriser() -> Memoriser:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Memoriser()
    torch.set_num_threads(previous)


def test_the_setting_memorises(memoriser):
    """The precondition of the sample tests: training data is fitted far better than held-out."""
    assert accuracy(memoriser.model, memoriser.data(memoriser.train)) > 0.9
    assert accuracy(memoriser.model, memoriser.data(memoriser.heldout)) < 0.8


def test_class_unlearning_never_predicts_the_class_and_keeps_the_others(memoriser):
    forget = memoriser.train[memoriser.labels[memoriser.train] == DROPPED]
    result = memoriser.unlearn(forget)
    assert result.log[0]["head_only"] and result.log[0]["dropped_classes"] == [DROPPED]
    everything = np.arange(len(memoriser.labels))
    assert not (memoriser.predictions(result.model, everything) == DROPPED).any()
    # Only the head moved: every body weight and batch-norm statistic is the original's.
    original = memoriser.model.state_dict()
    for name, tensor in result.model.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(tensor, original[name]), name
    # Of the head, only the dropped class's row moved, so every recording gets the class the
    # original ranks highest after the dropped one: what a model that never saw it would pick.
    head, original_head, kept_rows = result.model.head, memoriser.model.head, torch.arange(NUM_CLASSES) != DROPPED
    assert torch.equal(head.weight[kept_rows], original_head.weight[kept_rows])
    assert torch.equal(head.bias[kept_rows], original_head.bias[kept_rows])
    assert not torch.equal(head.weight[DROPPED], original_head.weight[DROPPED])
    with evaluation_mode(memoriser.model):
        original_logits = memoriser.model(torch.from_numpy(memoriser.features))
    runner_up = original_logits.masked_fill(~kept_rows, -torch.inf).argmax(1).numpy()
    np.testing.assert_array_equal(memoriser.predictions(result.model, everything), runner_up)
    # The remaining classes' held-out accuracy stays within 2 points of the original's.
    kept = memoriser.heldout[memoriser.labels[memoriser.heldout] != DROPPED]
    before = accuracy(memoriser.model, memoriser.data(kept))
    assert accuracy(result.model, memoriser.data(kept)) >= before - 0.02


def test_class_unlearning_embeds_df_and_one_pass_of_dr_once(memoriser, monkeypatch):
    """Its cost scales with Df: each forget row and one pass's share of Dr rows (32 per forget
    batch of 32) are embedded once, in all 8 passes; no held-out data is needed or scored."""
    embedded = []
    model_class = type(memoriser.model)
    original_embed = model_class.embed

    def counting_embed(self, inputs):
        embedded.append(len(inputs))
        return original_embed(self, inputs)

    monkeypatch.setattr(model_class, "embed", counting_embed)
    forget = memoriser.train[memoriser.labels[memoriser.train] == DROPPED]
    retain = np.setdiff1d(memoriser.train, forget)
    result = unlearn("calibrated", memoriser.model, memoriser.data(forget), memoriser.data(retain),
                     train_config=memoriser.train_config, seed=0)
    assert result.log[0]["head_only"] and len([row for row in result.log if row["phase"] == "paired"]) == 8
    one_pass_of_retain = -(-len(forget) // 32) * 32
    assert one_pass_of_retain < len(retain)
    assert sum(embedded) == len(forget) + one_pass_of_retain


def test_class_unlearning_can_train_every_row_of_the_head(memoriser):
    forget = memoriser.train[memoriser.labels[memoriser.train] == DROPPED]
    result = memoriser.unlearn(forget, head_rows="all")
    assert not (memoriser.predictions(result.model, np.arange(len(memoriser.labels))) == DROPPED).any()
    kept_rows = torch.arange(NUM_CLASSES) != DROPPED
    assert not torch.equal(result.model.head.weight[kept_rows], memoriser.model.head.weight[kept_rows])


def test_sample_unlearning_lifts_forget_losses_to_the_heldout_level(memoriser):
    forget = np.sort(np.random.default_rng(1).choice(memoriser.train, 24, replace=False))
    before = memoriser.losses(memoriser.model, forget).median().item()
    target = memoriser.losses(memoriser.model, memoriser.heldout).median().item()
    assert target > before + 0.2  # there is a gap to close
    # 24 forget items are one batch, so an epoch is one step; 30 steps at lr 1e-3 give the pull
    # room to show where it stops.
    result = memoriser.unlearn(forget, epochs=30, lr=1e-3)
    assert not result.log[0]["head_only"]
    after = memoriser.losses(result.model, forget).median().item()
    assert after > before + 0.3 * (target - before)
    assert after < 1.25 * target
    heldout_accuracy = accuracy(memoriser.model, memoriser.data(memoriser.heldout))
    assert accuracy(result.model, memoriser.data(forget)) <= heldout_accuracy + 0.15
    retain = np.setdiff1d(memoriser.train, forget)
    assert accuracy(result.model, memoriser.data(retain)) >= accuracy(memoriser.model, memoriser.data(retain)) - 0.05


def test_a_long_schedule_does_not_overshoot(memoriser):
    """Gradient ascent keeps pushing; the quantile pull stops at the held-out level."""
    forget = np.sort(np.random.default_rng(2).choice(memoriser.train, 24, replace=False))
    target = memoriser.losses(memoriser.model, memoriser.heldout).median().item()
    result = memoriser.unlearn(forget, epochs=150, lr=1e-3)
    assert memoriser.losses(result.model, forget).median().item() < 1.5 * target
    ascent = unlearn("gradascent", memoriser.model, memoriser.data(forget), memoriser.data(np.setdiff1d(memoriser.train, forget)),
                     overrides={"epochs": 150, "lr": 1e-3}, seed=0)
    assert memoriser.losses(ascent.model, forget).median().item() > 3 * target


def test_it_stops_once_the_forget_set_already_looks_unseen(memoriser):
    """Held-out items as the "forget set" already sit at their own quantiles: nothing moves.
    Memorised training items do not, and every epoch runs."""
    heldout = memoriser.heldout
    result = memoriser.unlearn(heldout, epochs=6)
    assert not [row for row in result.log if row["phase"] == "paired"]
    assert result.log[-1] == {"phase": "converged", "epoch": 0, "pull_nats": pytest.approx(0.0, abs=1e-6)}
    original = memoriser.model.state_dict()
    assert all(torch.equal(tensor, original[name]) for name, tensor in result.model.state_dict().items())
    everything = memoriser.unlearn(heldout, epochs=6, pull_tolerance=0.0)
    assert [row["epoch"] for row in everything.log if row["phase"] == "paired"] == [1, 2, 3, 4, 5, 6]

    memorised = memoriser.unlearn(np.sort(np.random.default_rng(3).choice(memoriser.train, 24, replace=False)), epochs=3)
    assert [row["epoch"] for row in memorised.log if row["phase"] == "paired"] == [1, 2, 3]
    median = memorised.log[0]["heldout_median_nats"]
    checks = [row for row in memorised.log if row["phase"] == "pull"]
    assert [row["epoch"] for row in checks] == [0, 1, 2] and all(row["pull_nats"] > 0.2 * median for row in checks)


def test_the_embedding_cache_embeds_each_recording_once(memoriser):
    from speech_unlearning.methods.base import Batch
    from speech_unlearning.methods.model_outputs import EmbeddingCache

    calls = []

    class Counting(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def embed(self, inputs):
            calls.append(len(inputs))
            return self.model.embed(inputs)

    def batch(rows):
        rows = np.asarray(rows)
        flags = torch.ones(len(rows), dtype=torch.bool)
        return Batch(torch.from_numpy(memoriser.features[rows]), torch.from_numpy(memoriser.labels[rows]), rows, flags)

    model, cache = Counting(memoriser.model), EmbeddingCache(len(memoriser.features), torch.device("cpu"))
    first = cache.lookup(batch([5, 9, 11]), model)
    again = cache.lookup(batch([11, 5, 40]), model)
    assert calls == [3, 1]  # only row 40 was new
    with evaluation_mode(memoriser.model):
        direct = memoriser.model.embed(torch.from_numpy(memoriser.features[[11, 5, 40]]))
    assert torch.allclose(again, direct, atol=1e-6) and torch.equal(first[2], again[0])


@pytest.mark.parametrize(
    "name, value",
    [("pull_tolerance", -0.1), ("huber_beta", 0.0), ("head_lr", -1.0), ("head_rows", "some"), ("head_passes", 0)],
)
def test_bad_settings_are_named(memoriser, name, value):
    with pytest.raises(ConfigError, match=name):
        memoriser.unlearn(memoriser.train[:24], **{name: value})


def test_calibrated_needs_heldout_data(memoriser):
    forget = memoriser.train[:24]
    with pytest.raises(ConfigError, match="validation"):
        unlearn("calibrated", memoriser.model, memoriser.data(forget), memoriser.data(np.setdiff1d(memoriser.train, forget)))
