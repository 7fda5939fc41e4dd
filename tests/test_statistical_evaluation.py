"""Evaluation with statistical power: the forgetting score, U-LiRA, the informed attack and the
Retrain-spread tests, on distributions with a known answer, against reference implementations,
and on small models that memorise their forget set."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve
from torch import nn

from speech_unlearning.config import ConfigError
from speech_unlearning.evaluation import (
    ENSEMBLE_METRICS,
    EnsembleOutputs,
    InformedAttackConfig,
    MIAInputError,
    ModelPool,
    ULiRAConfig,
    attack_features,
    compare_with_retrains,
    confidence_matrix,
    evaluate_ensemble,
    feature_tensor,
    indistinguishability,
    is_no_op,
    logit_scaled_confidence,
    metric_values,
    nothing_to_forget,
    prediction_entropy,
    roc_auc,
    tpr_at_fpr,
)
from speech_unlearning.evaluation.forgetting_quality import (
    EPSILON_CAP,
    bucket_points,
    epsilon_of_rates,
    example_epsilon,
    example_epsilons,
    final_score,
    forgetting_quality,
)
from speech_unlearning.evaluation.informed_attack import informed_attack
from speech_unlearning.evaluation.roc import balanced_accuracy
from speech_unlearning.evaluation.ulira import fit_gaussians, log_likelihood_ratio, ulira_attack, ulira_scores
from speech_unlearning.models.base import SpeechClassifier
from speech_unlearning.registry import UnknownNameError
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.inference import accuracy, predict_logits
from speech_unlearning.training.trainer import fit

DELTA = 1e-5


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models run several times faster on one thread than on two contended ones."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _pools(rng: np.random.Generator, models: int, examples: int, shift: float, noise=1.0, spread=2.0):
    """(K, n) statistics of two pools: a per-example level shared by both, model noise, and `shift`
    added to the first pool ("unlearned") only."""
    level = rng.normal(0.0, spread, examples)
    unlearned = level + shift + rng.normal(0.0, noise, (models, examples))
    retrained = level + rng.normal(0.0, noise, (models, examples))
    return unlearned, retrained


# ---------------------------------------------------------------------------------------------
# Per-example statistics


def test_logit_scaled_confidence_is_log_odds_of_the_true_class():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(3, 20, 5))  # (K, n, C)
    labels = rng.integers(0, 5, size=20)
    probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    p_true = probs[:, np.arange(20), labels]
    np.testing.assert_allclose(logit_scaled_confidence(logits, labels), np.log(p_true / (1 - p_true)), rtol=1e-9)


def test_logit_scaled_confidence_stays_exact_where_probabilities_saturate():
    logits = np.array([[800.0, 0.0, 0.0], [0.0, 0.0, -900.0]])
    confidence = logit_scaled_confidence(logits, np.array([0, 2]))
    np.testing.assert_allclose(confidence, [800.0 - math.log(2), -900.0 - math.log(2)])
    with pytest.raises(ValueError, match="2 classes"):
        logit_scaled_confidence(np.zeros((4, 1)), np.zeros(4, dtype=int))


def test_attack_features_match_their_definitions():
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(0, 2, size=(30, 4)), rng.integers(0, 4, size=30)
    features = attack_features(logits, labels)  # (n, F)
    torch_loss = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction="none")
    np.testing.assert_allclose(features[:, 0], torch_loss.numpy(), rtol=1e-9)
    np.testing.assert_allclose(features[:, 1], logit_scaled_confidence(logits, labels))
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    np.testing.assert_allclose(features[:, 2], prediction_entropy(probs), rtol=1e-9)
    others = logits.copy()
    others[np.arange(30), labels] = -np.inf
    np.testing.assert_allclose(features[:, 3], logits[np.arange(30), labels] - others.max(axis=1))


# ---------------------------------------------------------------------------------------------
# ROC summaries: parity with scikit-learn


def test_roc_summaries_match_scikit_learn_with_ties():
    rng = np.random.default_rng(2)
    is_positive = rng.random(400) < 0.4
    scores = np.round(rng.normal(size=400) + is_positive, 1)  # rounding makes many ties
    assert roc_auc(scores, is_positive) == pytest.approx(roc_auc_score(is_positive, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(is_positive, scores)
    for target in (0.0, 0.01, 0.05, 0.3):
        assert tpr_at_fpr(scores, is_positive, target) == pytest.approx(tpr[fpr <= target].max())
    predicted = scores > 0.5
    assert balanced_accuracy(predicted, is_positive) == pytest.approx(balanced_accuracy_score(is_positive, predicted))
    with pytest.raises(MIAInputError):
        roc_auc(scores, np.ones(400, dtype=bool))


# ---------------------------------------------------------------------------------------------
# Forgetting quality (NeurIPS 2023 challenge)


def _brute_force_epsilon(unlearned: np.ndarray, retrained: np.ndarray) -> float:
    """The challenge's two rule families, every model compared with every threshold."""
    retrained_is_positive = np.median(retrained) > np.median(unlearned)
    positive, negative = (retrained, unlearned) if retrained_is_positive else (unlearned, retrained)
    low, high = min(positive.min(), negative.min()), max(positive.max(), negative.max())
    thresholds = np.linspace(low, high, int(np.ceil((high - low) * 100)))
    rates = [((negative[:, None] >= thresholds).mean(0), (positive[:, None] < thresholds).mean(0))]
    peaky, other = (negative, positive) if np.ptp(positive) >= np.ptp(negative) else (positive, negative)
    width = np.ptp(peaky)
    start, stop = peaky.min() + width - 2, peaky.max() + 2
    rights = np.linspace(start, stop, int(np.ceil((stop - start) * 100)))
    lefts = np.concatenate([np.linspace(r - width - 2, r - width + 2, 400) for r in rights])
    rights = np.repeat(rights, 400)

    def inside(sample):
        return ((lefts <= sample[:, None]) & (sample[:, None] <= rights)).mean(0)

    rates.append((inside(other), 1 - inside(peaky)))
    fpr = np.concatenate([r[0] for r in rates])
    fnr = np.concatenate([r[1] for r in rates])
    if np.any((fpr == 0) & (fnr == 0)):
        return EPSILON_CAP
    kept = (fpr > 0) & (fnr > 0)
    fpr, fnr = fpr[kept], fnr[kept]
    with np.errstate(invalid="ignore"):
        one = np.where(1 - DELTA - fpr > 0, np.log(np.clip(1 - DELTA - fpr, 1e-300, None)) - np.log(fnr), -np.inf)
        two = np.where(1 - DELTA - fnr > 0, np.log(np.clip(1 - DELTA - fnr, 1e-300, None)) - np.log(fpr), -np.inf)
    return float(min(max(0.0, np.maximum(one, two).max()), EPSILON_CAP))


def test_epsilon_of_rates_follows_the_challenge_rules():
    epsilon = epsilon_of_rates(np.array([0.25, 0.5, 0.0, 0.0, 0.1, 1.0]), np.array([0.25, 0.5, 0.0, 0.3, 0.0, 1.0]))
    assert epsilon[0] == pytest.approx(math.log((0.75 - DELTA) / 0.25))
    assert epsilon[1] == 0.0  # a coin flip: no evidence
    assert epsilon[2] == math.inf  # perfect separation
    assert np.isnan(epsilon[3]) and np.isnan(epsilon[4])  # one zero rate: dropped
    assert np.isnan(epsilon[5])  # always wrong: both logs undefined, dropped


def test_example_epsilon_on_a_hand_worked_example():
    # Retrain {0, 5, 6, 7} vs unlearned {-7, -6, -5, 1}: the best kept rule is "s >= t" for t in
    # (0, 1]: TPR = 3/4 at FPR = 1/4, so eps = log((1 - delta - 1/4) / (1/4)). Rules that reach
    # FPR = 0 leave FNR > 0 and are dropped. K = 4: buckets up to ceil(log 3) = 2, eps in [1, 1.5)
    # is the third bucket: 1/4 point.
    epsilon = example_epsilon(np.array([-7.0, -6.0, -5.0, 1.0]), np.array([0.0, 5.0, 6.0, 7.0]))
    assert epsilon == pytest.approx(math.log(3 - 4 * DELTA), abs=1e-12)
    assert bucket_points(np.array([epsilon]), 4)[0] == 0.25


def test_example_epsilon_matches_a_brute_force_scan():
    rng = np.random.default_rng(3)
    for shift, models in ((0.0, 8), (0.7, 8), (2.0, 12), (0.3, 5)):
        unlearned, retrained = _pools(rng, models, 3, shift)
        for column in range(3):
            expected = _brute_force_epsilon(unlearned[:, column], retrained[:, column])
            assert example_epsilon(unlearned[:, column], retrained[:, column]) == pytest.approx(expected, abs=1e-9)


def test_bucket_points_halve_per_half_unit_of_epsilon():
    # K = 8: ceil(log 7) = 2, four buckets worth 1, 1/2, 1/4, 1/8; eps >= 2 earns nothing.
    points = bucket_points(np.array([0.0, 0.49, 0.5, 1.2, 1.99, 2.0, EPSILON_CAP]), 8)
    np.testing.assert_array_equal(points, [1.0, 1.0, 0.5, 0.25, 0.125, 0.0, 0.0])
    assert bucket_points(np.array([3.9]), 32)[0] == 0.5**7  # ceil(log 31) = 4: eight buckets


def test_identical_samples_give_zero_epsilon_and_full_score():
    rng = np.random.default_rng(4)
    retrained = rng.normal(size=(16, 30))
    score = forgetting_quality(retrained.copy(), retrained)
    assert np.all(score.epsilons == 0.0)
    assert score.score == 1.0


def test_disjoint_pools_give_the_epsilon_cap_and_zero_score():
    rng = np.random.default_rng(5)
    unlearned, retrained = _pools(rng, 16, 30, shift=30.0, noise=1.0)
    score = forgetting_quality(unlearned, retrained)
    assert np.all(score.epsilons == EPSILON_CAP)
    assert score.score == 0.0


def test_forgetting_quality_falls_as_the_pools_separate():
    rng = np.random.default_rng(6)
    scores = [forgetting_quality(*_pools(rng, 16, 40, shift)).score for shift in (0.0, 1.0, 3.0, 30.0)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4
    # same distribution: well above the separated pools, but not 1 at finite K (module docstring)
    assert 0.1 < scores[0] < 0.5
    assert scores[-1] == 0.0


def test_a_near_constant_pool_gets_the_cap():
    rng = np.random.default_rng(7)
    retrained = rng.normal(size=(8, 2))
    unlearned = np.full((8, 2), float(np.median(retrained))) + rng.normal(0, 1e-4, (8, 2))
    np.testing.assert_array_equal(example_epsilons(unlearned, retrained), [EPSILON_CAP, EPSILON_CAP])


def test_final_score_multiplies_the_utility_ratios():
    result = final_score(0.5, [0.9, 0.7], [1.0, 1.0], [0.6, 0.6], [0.8, 0.7])
    assert result["retain_ratio"] == pytest.approx(0.8)
    assert result["test_ratio"] == pytest.approx(0.6 / 0.75)
    assert result["final_score"] == pytest.approx(0.5 * 0.8 * 0.8)


def test_forgetting_quality_rejects_pools_it_cannot_score():
    with pytest.raises(MIAInputError, match="at least 3 models"):
        forgetting_quality(np.zeros((2, 5)), np.zeros((8, 5)))
    with pytest.raises(ValueError, match="same examples"):
        forgetting_quality(np.zeros((4, 5)), np.zeros((4, 6)))


# ---------------------------------------------------------------------------------------------
# U-LiRA


def test_gaussian_fits_use_own_or_pooled_variance():
    rng = np.random.default_rng(8)
    shadows = rng.normal(0, [1.0, 3.0], size=(40, 2))
    own = fit_gaussians(shadows, ULiRAConfig(own_variance_from=32))
    np.testing.assert_allclose(own.mean, shadows.mean(0))
    np.testing.assert_allclose(own.std, shadows.std(0, ddof=1))
    assert own.own_variance.all()
    pooled = fit_gaussians(shadows, ULiRAConfig(own_variance_from=64))
    expected = math.sqrt((shadows.var(0, ddof=1) * 39).sum() / 78)
    np.testing.assert_allclose(pooled.std, [expected, expected])
    shadows[:5, 0] = np.nan  # these shadows do not count for example 0
    np.testing.assert_allclose(fit_gaussians(shadows).mean[0], shadows[5:, 0].mean())


def test_log_likelihood_ratio_matches_scipy():
    rng = np.random.default_rng(9)
    in_fit, out_fit = fit_gaussians(rng.normal(2, 1, (6, 4))), fit_gaussians(rng.normal(0, 1, (6, 4)))
    targets = rng.normal(1, 1, (3, 4))
    expected = stats.norm.logpdf(targets, in_fit.mean, in_fit.std)
    expected -= stats.norm.logpdf(targets, out_fit.mean, out_fit.std)
    np.testing.assert_allclose(log_likelihood_ratio(targets, in_fit, out_fit), expected)
    in_shadows = rng.normal(size=(6, 4))
    in_shadows[:, 0] = np.nan  # no IN shadow for example 0: it cannot be scored
    scores = ulira_scores(in_shadows, rng.normal(size=(6, 4)), targets)
    assert np.isnan(scores[:, 0]).all() and np.isfinite(scores[:, 1:]).all()


def test_ulira_is_at_chance_on_identical_pools():
    aucs = [ulira_attack(*_pools(np.random.default_rng(seed), 8, 200, shift=0.0))["auc"] for seed in range(3)]
    assert abs(np.mean(aucs) - 0.5) < 0.03


def test_ulira_separates_shifted_pools():
    result = ulira_attack(*_pools(np.random.default_rng(10), 8, 100, shift=3.0))
    assert result["auc"] > 0.95 and result["accuracy"] > 0.9
    assert result["tpr_at_1pct_fpr"] > 0.5
    assert result["n_positive"] == result["n_negative"] == 800


def test_ulira_sees_what_a_population_threshold_misses():
    # Examples differ far more from each other (spread 5) than unlearning shifts them (0.8):
    # one threshold for every example sees little, a per-example test sees it.
    unlearned, retrained = _pools(np.random.default_rng(11), 8, 200, shift=0.8, noise=0.3, spread=5.0)
    is_unlearned = np.r_[np.ones(unlearned.size, dtype=bool), np.zeros(retrained.size, dtype=bool)]
    population_auc = roc_auc(np.r_[unlearned.ravel(), retrained.ravel()], is_unlearned)
    assert population_auc < 0.6
    assert ulira_attack(unlearned, retrained)["auc"] > 0.9


def test_ulira_rejects_too_few_models():
    with pytest.raises(MIAInputError, match="at least 2 models"):
        ulira_attack(np.zeros((2, 5)), np.zeros((5, 5)))
    with pytest.raises(ConfigError, match="own_variance_from"):
        ULiRAConfig(own_variance_from=1)


# ---------------------------------------------------------------------------------------------
# Informed attack


def _feature_pools(rng: np.random.Generator, models: int, examples: int, shift: float, spread: float = 1.0):
    unlearned, retrained = _pools(rng, models, examples, shift, noise=1.0, spread=spread)
    # two informative views of the statistic and one pure-noise feature
    def features(pool):
        return np.stack([pool, -0.5 * pool, rng.normal(size=pool.shape)], axis=-1)  # (K, n, 3)

    return features(unlearned), features(retrained)


@pytest.mark.parametrize("classifier", ["logistic", "boosting"])
def test_informed_attack_is_at_chance_on_identical_features(classifier):
    config = InformedAttackConfig(classifier=classifier)
    result = informed_attack(*_feature_pools(np.random.default_rng(12), 6, 60, 0.0), config)
    assert abs(result["balanced_accuracy"] - 0.5) < 0.08
    assert abs(result["auc"] - 0.5) < 0.08
    assert result["n_folds"] == 6 and result["n_rows"] == 2 * 6 * 60


@pytest.mark.parametrize("classifier", ["logistic", "boosting"])
def test_informed_attack_finds_separated_features(classifier):
    config = InformedAttackConfig(classifier=classifier)
    result = informed_attack(*_feature_pools(np.random.default_rng(13), 6, 60, 4.0), config)
    assert result["balanced_accuracy"] > 0.9 and result["auc"] > 0.95


def test_per_example_offset_turns_the_attack_per_example():
    pools = _feature_pools(np.random.default_rng(14), 6, 100, 1.0, spread=6.0)
    plain = informed_attack(*pools, InformedAttackConfig(per_example_offset=False))
    informed = informed_attack(*pools, InformedAttackConfig(per_example_offset=True))
    assert plain["auc"] < 0.65
    assert informed["auc"] > 0.7
    assert informed["auc"] > plain["auc"] + 0.1


def test_informed_attack_folds_follow_the_seed_groups():
    unlearned, retrained = _feature_pools(np.random.default_rng(15), 6, 20, 2.0)
    result = informed_attack(unlearned, retrained, None, [0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2])
    assert result["n_folds"] == 3
    with pytest.raises(MIAInputError, match="2 seeds"):
        informed_attack(unlearned, retrained, None, [7] * 6, [7] * 6)
    with pytest.raises(ConfigError, match="classifier"):
        InformedAttackConfig(classifier="forest")


# ---------------------------------------------------------------------------------------------
# Indistinguishability from the Retrain spread


def test_welch_test_matches_scipy_and_decides_at_the_stated_level():
    method, retrains = [0.81, 0.84, 0.86], [0.90, 0.91, 0.93, 0.92]
    comparison = compare_with_retrains(method, retrains)
    assert comparison.test == "welch"
    assert comparison.p_value == pytest.approx(stats.ttest_ind(method, retrains, equal_var=False).pvalue)
    assert comparison.inside is (comparison.p_value >= 0.05)
    assert comparison.retrain_mean == pytest.approx(0.915)
    assert comparison.retrain_std == pytest.approx(np.std(retrains, ddof=1))


def test_welch_test_rejects_about_five_percent_of_same_distribution_draws():
    rng = np.random.default_rng(16)
    outside = [not compare_with_retrains(rng.normal(size=5), rng.normal(size=5)).inside for _ in range(600)]
    assert 0.025 < np.mean(outside) < 0.08


def test_single_value_uses_the_prediction_interval():
    retrains = [0.80, 0.82, 0.84]  # mean 0.82, std 0.02, K = 3
    half_width = stats.t.ppf(0.975, df=2) * 0.02 * math.sqrt(1 + 1 / 3)
    assert compare_with_retrains(0.82 + 0.99 * half_width, retrains).inside is True
    assert compare_with_retrains(0.82 + 1.01 * half_width, retrains).inside is False
    at_edge = compare_with_retrains(0.82 + half_width, retrains)
    assert at_edge.test == "prediction_interval" and at_edge.p_value == pytest.approx(0.05)


def test_degenerate_and_untestable_comparisons():
    assert compare_with_retrains([0.0, 0.0], [0.0, 0.0, 0.0]).inside is True
    assert compare_with_retrains([1.0, 1.0], [0.0, 0.0, 0.0]).inside is False
    assert compare_with_retrains(0.5, [0.5, 0.5]).inside is True
    untested = compare_with_retrains([0.3, 0.4], [0.5])
    assert untested.inside is None and untested.test == "untested"


def test_indistinguishability_counts_tested_metrics():
    retrains = metric_values(
        [{"accuracy": {"df": 0.10 + 0.01 * k, "test": 0.90 + 0.01 * k, "n_test": 100.0}} for k in range(4)]
    )
    assert set(retrains) == {"accuracy.df", "accuracy.test"}  # counts are not metrics
    method = {"accuracy.df": [0.95, 0.97, 0.96], "accuracy.test": [0.91, 0.92, 0.905], "loss_mia.auc": [0.5]}
    retrains["loss_mia.auc"] = [0.52]  # one Retrain value: untested
    summary = indistinguishability(method, retrains)
    assert summary["n_inside"] == 1 and summary["n_tested"] == 2
    assert summary["untested"] == ["loss_mia.auc"]
    assert summary["headline"] == "indistinguishable from Retrain on 1 of 2 metrics"
    assert summary["comparisons"]["accuracy.df"]["inside"] is False


def test_is_no_op_compares_every_byte_of_the_state():
    torch.manual_seed(0)
    original = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    assert is_no_op(copy.deepcopy(original), original)
    assert is_no_op(copy.deepcopy(original.state_dict()), original)
    nudged = copy.deepcopy(original)
    with torch.no_grad():
        nudged[0].weight[0, 0] = torch.nextafter(nudged[0].weight[0, 0], torch.tensor(10.0))
    assert not is_no_op(nudged, original)
    buffers = copy.deepcopy(original)
    buffers[1].running_mean += 1.0  # a buffer counts as state
    assert not is_no_op(buffers, original)
    signed = {"w": torch.tensor([0.0])}
    assert not is_no_op({"w": torch.tensor([-0.0])}, signed)  # equal as numbers, different bytes


# ---------------------------------------------------------------------------------------------
# Ensemble registry


def test_ensemble_registry_runs_and_skips():
    rng = np.random.default_rng(17)
    labels = rng.integers(0, 3, size=12)
    outputs = EnsembleOutputs(labels, ModelPool(rng.normal(size=(4, 12, 3))), ModelPool(rng.normal(size=(4, 12, 3))))
    assert ENSEMBLE_METRICS.names() == ["forgetting_quality", "informed_attack", "ulira"]
    report = evaluate_ensemble(outputs)
    assert set(report["results"]) == set(ENSEMBLE_METRICS.names()) and not report["skipped"]
    assert "final_score" not in report["results"]["forgetting_quality"]  # no accuracies given
    small = EnsembleOutputs(labels, ModelPool(rng.normal(size=(2, 12, 3))), ModelPool(rng.normal(size=(4, 12, 3))))
    assert "at least 3 models" in evaluate_ensemble(small, ["forgetting_quality"])["skipped"]["forgetting_quality"]
    with pytest.raises(UnknownNameError, match="ulira"):
        evaluate_ensemble(outputs, ["u-lira"])


# ---------------------------------------------------------------------------------------------
# Real models: an Original that memorised Df against Retrains that never saw it


class TinyMLP(SpeechClassifier):
    """A two-layer MLP with the SpeechClassifier embed / head split."""

    def __init__(self, input_dim: int, num_classes: int, hidden: int = 64):
        super().__init__(hidden, num_classes)
        self.body = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.body(inputs)  # (B, hidden)


DIM, NUM_CLASSES, MODELS = 16, 4, 8


@pytest.fixture(scope="module")
def model_pools():
    """Eight Originals trained with Df (32 mislabelled points they memorise), and two independent
    sets of eight Retrains trained without it; seeds differ between all 24 models."""
    rng = np.random.default_rng(0)
    retain_size, forget_size, test_size = 160, 32, 160
    labels = rng.integers(0, NUM_CLASSES, retain_size + forget_size + test_size)
    features = (rng.normal(size=(NUM_CLASSES, DIM))[labels] + rng.normal(size=(len(labels), DIM))).astype(np.float32)
    forget_rows = np.arange(retain_size, retain_size + forget_size)
    # a wrong label: only a model that trained on the point can predict it
    labels[forget_rows] = (labels[forget_rows] + rng.integers(1, NUM_CLASSES, forget_size)) % NUM_CLASSES
    rows = np.arange(len(labels))
    views = {
        "retain": ArrayData(features, labels, rows[:retain_size]),
        "forget": ArrayData(features, labels, forget_rows),
        "test": ArrayData(features, labels, rows[retain_size + forget_size :]),
        "train": ArrayData(features, labels, rows[: retain_size + forget_size]),
    }

    def train(data: ArrayData, first_seed: int) -> list[nn.Module]:
        models = []
        for seed in range(first_seed, first_seed + MODELS):
            torch.manual_seed(seed)
            model = TinyMLP(DIM, NUM_CLASSES)
            config = TrainConfig(epochs=40, batch_size=32, lr=3e-3, patience=0, progress=False, device="cpu", seed=seed)
            fit(model, data, None, config)
            models.append(model)
        return models

    pools = {"original": train(views["train"], 300), "retrain_a": train(views["retain"], 100)}
    pools["retrain_b"] = train(views["retain"], 200)
    return views, pools


def test_the_originals_memorised_the_forget_set(model_pools):
    views, pools = model_pools
    memorised = [accuracy(model, views["forget"]) for model in pools["original"]]
    assert min(memorised) >= 0.9 and np.mean(memorised) >= 0.95
    assert max(accuracy(model, views["forget"]) for model in pools["retrain_a"] + pools["retrain_b"]) < 0.1


def test_confidence_matrix_stacks_each_models_statistic(model_pools):
    views, pools = model_pools
    matrix = confidence_matrix(pools["original"][:3], views["forget"])
    assert matrix.shape == (3, 32)
    labels = views["forget"].labels[views["forget"].indices]
    logits = predict_logits(pools["original"][1], views["forget"])
    np.testing.assert_allclose(matrix[1], logit_scaled_confidence(logits, labels))
    assert feature_tensor(pools["original"][:3], views["forget"]).shape == (3, 32, 4)


def test_forgetting_score_separates_an_unchanged_original_from_retrains(model_pools):
    views, pools = model_pools
    originals, retrain_a, retrain_b = (confidence_matrix(pools[name], views["forget"]) for name in pools)
    unchanged = forgetting_quality(originals, retrain_a)
    other_retrains = forgetting_quality(retrain_b, retrain_a)
    assert unchanged.score == 0.0  # every forget example perfectly separated
    assert np.all(unchanged.epsilons == EPSILON_CAP)
    assert other_retrains.score > 0.1  # at the level of two draws of one distribution
    assert np.all(other_retrains.epsilons < EPSILON_CAP)
    assert other_retrains.score > unchanged.score + 0.1


def test_ensemble_scores_on_real_models(model_pools):
    views, pools = model_pools
    splits = (views["forget"], views["retain"], views["test"])
    unchanged = evaluate_ensemble(EnsembleOutputs.from_models(pools["original"], pools["retrain_a"], *splits))
    others = evaluate_ensemble(EnsembleOutputs.from_models(pools["retrain_b"], pools["retrain_a"], *splits))
    assert not unchanged["skipped"] and not others["skipped"]
    assert unchanged["results"]["ulira"]["auc"] > 0.95
    assert unchanged["results"]["informed_attack"]["balanced_accuracy"] > 0.9
    assert abs(others["results"]["ulira"]["auc"] - 0.5) < 0.1
    assert abs(others["results"]["informed_attack"]["auc"] - 0.5) < 0.1
    assert unchanged["results"]["forgetting_quality"]["final_score"] == 0.0
    others_quality = others["results"]["forgetting_quality"]
    assert others_quality["final_score"] == pytest.approx(
        others_quality["forgetting_quality"] * others_quality["retain_ratio"] * others_quality["test_ratio"]
    )
    assert others_quality["n_models"] == MODELS


def test_nothing_to_forget_and_no_op_on_real_models(model_pools):
    views, pools = model_pools

    def values(models):
        subsets = ("forget", "retain", "test")
        return {f"accuracy.{name}": [accuracy(model, views[name]) for model in models] for name in subsets}

    retrains = values(pools["retrain_a"])
    assert not nothing_to_forget(values(pools["original"]), retrains)
    comparisons = indistinguishability(values(pools["original"]), retrains)["comparisons"]
    assert comparisons["accuracy.forget"]["inside"] is False
    # a split where the "Original" never saw Df: nothing measurable to forget
    assert nothing_to_forget(values(pools["retrain_b"]), retrains)
    original = pools["original"][0]
    assert is_no_op(copy.deepcopy(original), original)
    assert not is_no_op(pools["original"][1], original)
