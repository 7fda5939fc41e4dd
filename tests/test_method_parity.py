"""Parity of the methods' building blocks with independent reference computations."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import nn

from speech_unlearning.config import ConfigError
from speech_unlearning.methods import unlearn
from speech_unlearning.methods.losses import softened_kl
from speech_unlearning.methods.saliency import forget_gradients, top_fraction_mask
from speech_unlearning.methods.salun import SalUnConfig
from speech_unlearning.methods.ssd import SSD, SSDConfig, diagonal_fisher
from speech_unlearning.methods.superloss import SuperLoss, SuperLossConfig, superloss_sigma
from speech_unlearning.models.base import SpeechClassifier
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.inference import per_sample_loss
from speech_unlearning.training.runtime import Budget


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread avoids intra-op synchronisation stalls on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

# --------------------------------------------------------------------------------------------
# Temperature-softened KL


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0])
def test_softened_kl_matches_torch_kl_div(temperature):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(16, 7, generator=generator) * 3
    teacher = torch.randn(16, 7, generator=generator) * 3
    ours = softened_kl(student, teacher, temperature)
    log_student = F.log_softmax(student / temperature, dim=1)
    teacher_probs = F.softmax(teacher / temperature, dim=1)
    per_sample = F.kl_div(log_student, teacher_probs, reduction="none").sum(dim=1)
    torch.testing.assert_close(ours, per_sample, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.mean(), F.kl_div(log_student, teacher_probs, reduction="batchmean"))
    # SCRUB's distillation loss: sum-KL / batch size x T^2.
    scrub_reference = F.kl_div(log_student, teacher_probs, reduction="sum") * temperature**2 / student.shape[0]
    torch.testing.assert_close((ours * temperature**2).mean(), scrub_reference)


def test_softened_kl_is_zero_for_identical_outputs_and_positive_otherwise():
    logits = torch.randn(5, 4)
    assert torch.allclose(softened_kl(logits, logits.clone(), 2.0), torch.zeros(5), atol=1e-6)
    assert bool((softened_kl(logits, logits.flip(1), 2.0) > 0).all())


# --------------------------------------------------------------------------------------------
# SuperLoss


def _numeric_sigma(loss: float, tau: float, lam: float) -> float:
    """argmin over σ of (ℓ − τ)σ + λ(log σ)², searched in log σ ∈ [-30, 1].

    Above log σ = 1 the objective has no further local minimum: for β = (ℓ − τ)/λ < −2/e it is
    unbounded below as σ → ∞, which is why SuperLoss clamps there, at σ = e.
    """
    result = minimize_scalar(
        lambda s: (loss - tau) * math.exp(s) + lam * s * s, bounds=(-30.0, 1.0), method="bounded",
        options={"xatol": 1e-10},
    )
    return math.exp(result.x)


def test_superloss_sigma_matches_numeric_minimisation():
    rng = np.random.default_rng(0)
    losses = rng.uniform(0, 8, 300)
    taus = rng.uniform(0, 4, 300)
    lams = rng.choice([0.1, 0.25, 1.0, 3.0], 300)
    for loss, tau, lam in zip(losses, taus, lams):
        expected = math.e if (loss - tau) / lam < -2 / math.e else _numeric_sigma(loss, tau, lam)
        actual = float(superloss_sigma(np.array([loss]), tau, lam)[0])
        assert actual == pytest.approx(expected, rel=1e-4, abs=1e-7), (loss, tau, lam)


def test_superloss_sigma_at_the_branch_point_and_extremes():
    lam, tau = 1.0, 2.0
    at_branch = tau - 2 / math.e * lam
    sigma = superloss_sigma(np.array([at_branch, tau, tau - 10, tau + 1e3]), tau, lam)
    assert np.all(np.isfinite(sigma))
    assert sigma[0] == pytest.approx(math.e) and sigma[2] == pytest.approx(math.e)
    assert sigma[1] == pytest.approx(1.0)  # ℓ = τ: neither easy nor hard
    assert 0 < sigma[3] < 1e-2


def test_superloss_gradient_is_sigma_times_loss_gradient():
    losses = torch.tensor([0.1, 0.5, 1.0, 2.0, 6.0], dtype=torch.float64, requires_grad=True)
    weighting = SuperLoss(SuperLossConfig(superloss_lambda=0.5, superloss_tau=1.2))
    weighting(losses).sum().backward()
    expected = superloss_sigma(losses.detach().numpy(), 1.2, 0.5)
    np.testing.assert_allclose(losses.grad.numpy(), expected, rtol=1e-12)
    assert expected[0] > 1 > expected[-1]  # easy samples up-weighted, hard ones down


def test_superloss_tau_is_an_ema_seeded_by_the_first_batch():
    weighting = SuperLoss(SuperLossConfig(superloss_tau_momentum=0.75))
    weighting(torch.tensor([1.0, 3.0]))
    assert weighting.tau == pytest.approx(2.0)
    weighting(torch.tensor([6.0, 6.0]))
    assert weighting.tau == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)


# --------------------------------------------------------------------------------------------
# SalUn


def test_top_fraction_mask_matches_brute_force_over_concatenated_gradients():
    generator = torch.Generator().manual_seed(3)
    gradients = {
        "a": torch.randn(4, 5, generator=generator),
        "b": torch.randn(7, generator=generator),
        "c": torch.zeros(3, 2),  # ties at zero must be broken the same way
        "d": torch.randn(2, 3, 2, generator=generator),
    }
    for ratio in (0.1, 0.37, 0.5, 0.9, 1.0):
        masks = top_fraction_mask(gradients, ratio)
        flat = np.concatenate([g.abs().flatten().numpy() for g in gradients.values()])
        keep = int(len(flat) * ratio)
        expected = np.zeros(len(flat), dtype=bool)
        expected[np.argsort(-flat, kind="stable")[:keep]] = True
        actual = np.concatenate([masks[name].flatten().numpy() for name in gradients])
        np.testing.assert_array_equal(actual, expected)
        assert all(masks[name].shape == gradients[name].shape for name in gradients)


class _MaskedSpecModel(SpeechClassifier):
    """Tiny classifier with batch norm and a parameter the forward pass never uses."""

    def __init__(self, num_classes: int = 3, features: int = 12, hidden: int = 16):
        super().__init__(hidden, num_classes)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.masked_spec_embed = nn.Parameter(torch.ones(hidden))  # gets no gradient, like wav2vec 2.0's

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.body(inputs)


def _toy_data(num_classes: int = 3, per_class: int = 30, features: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    centres = rng.normal(size=(num_classes, features)).astype(np.float32) * 2
    inputs = (centres[labels] + rng.normal(size=(len(labels), features))).astype(np.float32)
    forget = np.flatnonzero(labels == 0)
    retain = np.flatnonzero(labels != 0)
    return ArrayData(inputs, labels, forget), ArrayData(inputs, labels, retain)


class _Ctx:
    """Just enough of an UnlearnContext for forget_gradients / SSD.dampen."""

    def __init__(self, model, forget, config=None):
        self.model, self.forget, self.device, self.config = model, forget, torch.device("cpu"), config
        self.budget, self.steps, self.budget_exhausted = Budget(None), 0, False

    def trainable_parameters(self):
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]


def test_salun_forget_gradients_sum_every_batch_in_eval_mode():
    torch.manual_seed(0)
    model = _MaskedSpecModel()
    forget, _ = _toy_data()
    model.train()
    gradients = forget_gradients(_Ctx(model, forget), batch_size=7)  # 30 rows: 5 batches, last of 2
    assert model.training and all(p.grad is None for p in model.parameters())
    assert "masked_spec_embed" not in gradients
    reference = copy.deepcopy(model).eval()
    expected = {name: torch.zeros_like(p) for name, p in reference.named_parameters()}
    rows = forget.indices
    for start in range(0, len(rows), 7):
        chunk = forget.subset(np.arange(start, min(start + 7, len(rows))))
        inputs, labels, _ = next(chunk.batches(len(chunk)))
        reference.zero_grad()
        per_sample_loss(reference(inputs), labels).mean().backward()
        for name, p in reference.named_parameters():
            if p.grad is not None:
                expected[name] += p.grad
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient.abs(), expected[name].abs(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "adam"])
def test_salun_masked_out_weights_stay_bit_identical(optimizer):
    torch.manual_seed(0)
    original = _MaskedSpecModel()
    forget, retain = _toy_data()
    overrides = {"optimizer": optimizer, "weight_decay": 0.1, "momentum": 0.9, "lr": 0.05, "epochs": 3}
    overrides["batch_size"] = 16
    result = unlearn("salun", original, forget, retain, overrides=overrides, seed=1)
    config = SalUnConfig(**overrides)
    ctx = _Ctx(copy.deepcopy(original), forget)
    masks = top_fraction_mask(forget_gradients(ctx, config.batch_size), config.mask_ratio)
    after = dict(result.model.named_parameters())
    changed_inside = 0
    for name, before in original.named_parameters():
        mask = masks.get(name, torch.zeros_like(before, dtype=torch.bool))
        assert torch.equal(after[name][~mask], before[~mask]), name
        changed_inside += int((after[name][mask] != before[mask]).sum())
    assert changed_inside > 0
    assert torch.equal(after["masked_spec_embed"], original.masked_spec_embed)


# --------------------------------------------------------------------------------------------
# SSD


def test_ssd_dampens_exactly_the_selected_coordinates():
    model = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    before = model.weight.detach().clone()
    forget_importance = {"weight": torch.tensor([[50.0, 1.0, 100.0], [0.0, 30.0, 11.0]])}
    full_importance = {"weight": torch.tensor([[2.0, 1.0, 5.0], [1.0, 2.0, 1.0]])}
    ctx = _Ctx(model, None, SSDConfig(alpha=10.0, dampening=1.0))
    changed = SSD.dampen(ctx, forget_importance, full_importance)
    # selected where I_f > 10·I_D: (0,0) 50>20, (0,2) 100>50, (1,1) 30>20, (1,2) 11>10
    factor = torch.tensor([[2 / 50, 1.0, 5 / 100], [1.0, 2 / 30, 1 / 11]])
    torch.testing.assert_close(model.weight.detach(), before * factor)
    assert changed == 4


@pytest.mark.parametrize("fisher", ["per-sample", "per-batch"])
def test_ssd_fisher_estimates_match_explicit_gradient_loops(fisher):
    torch.manual_seed(0)
    model = _MaskedSpecModel().eval()
    forget, _ = _toy_data()
    ctx = _Ctx(model, forget, SSDConfig(fisher=fisher, batch_size=8, max_elements=1000))  # forces vmap chunks
    ctx.generator = torch.Generator().manual_seed(0)
    estimate = diagonal_fisher(ctx, forget)
    group = 1 if fisher == "per-sample" else 8
    order = torch.randperm(len(forget), generator=torch.Generator().manual_seed(0)).numpy()  # the same shuffle
    expected = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for start in range(0, len(forget), group):
        chunk = forget.subset(order[start : start + group])
        inputs, labels, _ = next(chunk.batches(len(chunk)))
        model.zero_grad()
        per_sample_loss(model(inputs), labels).mean().backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                expected[name] += p.grad**2
    count = len(forget) if fisher == "per-sample" else -(-len(forget) // group)
    for name in expected:
        torch.testing.assert_close(estimate[name], expected[name] / count, rtol=1e-4, atol=1e-10, msg=name)


def test_ssd_per_sample_rejects_an_alpha_that_cannot_select_anything():
    forget, retain = _toy_data()  # |D| / |Df| = 3
    with pytest.raises(ConfigError, match=r"alpha.*3\.00"):
        unlearn("ssd", _MaskedSpecModel(), forget, retain, overrides={"fisher": "per-sample", "alpha": "3"})
    result = unlearn("ssd", _MaskedSpecModel(), forget, retain, overrides={"fisher": "per-sample", "alpha": "2"})
    assert result.log[-1]["dampened_parameters"] >= 0


# --------------------------------------------------------------------------------------------
# Configuration errors


def test_unknown_override_key_is_named_with_the_valid_keys():
    torch.manual_seed(0)
    forget, retain = _toy_data()
    with pytest.raises(ConfigError) as error:
        unlearn("scrub", _MaskedSpecModel(), forget, retain, overrides={"learning_rate": "0.1"})
    message = str(error.value)
    assert "'learning_rate'" in message and "valid keys" in message and "max_steps" in message


def test_superloss_option_on_a_plain_method_points_to_the_variant():
    forget, retain = _toy_data()
    with pytest.raises(ConfigError, match=r"superloss_lambda.*scrub\+superloss"):
        unlearn("scrub", _MaskedSpecModel(), forget, retain, overrides={"superloss_lambda": "2"})
    with pytest.raises(ConfigError, match="superloss_lambda"):
        unlearn("scrub+superloss", _MaskedSpecModel(), forget, retain, overrides={"superloss_lambda": "-1"})


# --------------------------------------------------------------------------------------------
# The engine against the training loop


def test_finetune_matches_the_training_loop_step_for_step():
    """FineTune is fit() on Dr: same seed, optimiser and batches give the same weights."""
    from speech_unlearning.training.config import TrainConfig
    from speech_unlearning.training.trainer import fit

    torch.manual_seed(0)
    original = _MaskedSpecModel()
    forget, retain = _toy_data()
    settings = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-3, "momentum": 0.9, "epochs": 2, "batch_size": 16}
    result = unlearn("finetune", original, forget, retain, overrides=settings, seed=4)
    reference = copy.deepcopy(original)
    fit(reference, retain, None, TrainConfig(**settings, seed=4, patience=0, progress=False))
    for (name, ours), (_, theirs) in zip(result.model.state_dict().items(), reference.state_dict().items()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)


def test_models_outside_the_registry_are_reinitialised_for_retrain_and_bad_teaching():
    from speech_unlearning.training.config import TrainConfig
    from speech_unlearning.training.inference import accuracy

    torch.manual_seed(0)
    original = _MaskedSpecModel()
    forget, retain = _toy_data()
    recipe = TrainConfig(epochs=5, batch_size=16, patience=0, progress=False)
    retrained = unlearn("retrain", original, forget, retain, train_config=recipe, seed=2).model
    assert accuracy(retrained, forget) == 0.0 and accuracy(retrained, retain) > 0.8
    assert not torch.equal(retrained.body[1].weight, original.body[1].weight)
