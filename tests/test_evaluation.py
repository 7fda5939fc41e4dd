"""The evaluation layer: attacks on controlled models, hand-checked arithmetic, the report."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from speech_unlearning.data.corpus import Corpus, Utterance
from speech_unlearning.data.splits import class_split, sample_split
from speech_unlearning.evaluation import (
    METRICS,
    SCHEMA_VERSION,
    EvalSettings,
    RelearnConfig,
    evaluate_unlearning,
    format_summary,
    gap_of_means,
    gap_to_retrain,
    loss_mia,
    modified_entropy,
    prediction_entropy,
    relearn_attack,
    representation_probe,
    svc_mia,
    write_report,
)
from speech_unlearning.models.base import SpeechClassifier
from speech_unlearning.registry import UnknownNameError
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.inference import accuracy, predict_logits
from speech_unlearning.training.trainer import fit


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models run ~20x faster on one thread than on two contended ones."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class TinyMLP(SpeechClassifier):
    """A two-layer MLP with the SpeechClassifier embed / head split."""

    def __init__(self, input_dim: int, num_classes: int, hidden: int = 64):
        super().__init__(hidden, num_classes)
        self.body = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.body(inputs)  # (B, hidden)


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()


def _losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    losses = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction="none")
    return losses.numpy()


# ---------------------------------------------------------------------------------------------
# Membership inference on a model that memorises random labels


@pytest.fixture(scope="module")
def memorised():
    """An MLP that memorised 128 random-label points; logits on them and on 256 unseen ones."""
    rng = np.random.default_rng(0)
    train_x = rng.normal(size=(128, 20)).astype(np.float32)
    train_y = rng.integers(0, 4, size=128)
    unseen_x = rng.normal(size=(256, 20)).astype(np.float32)
    unseen_y = rng.integers(0, 4, size=256)
    torch.manual_seed(0)
    model = TinyMLP(20, 4, hidden=128)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs, labels = torch.from_numpy(train_x), torch.from_numpy(train_y)
    for _ in range(300):  # full batch, until every label is memorised
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    with torch.no_grad():
        train_logits, unseen_logits = model(inputs).numpy(), model(torch.from_numpy(unseen_x)).numpy()
    assert (train_logits.argmax(1) == train_y).mean() == 1.0  # the premise: memorised
    return train_logits, train_y, unseen_logits, unseen_y


def test_loss_mia_recognises_memorised_training_points(memorised):
    train_logits, train_y, unseen_logits, unseen_y = memorised
    result = loss_mia(_losses(train_logits[:64], train_y[:64]), _losses(unseen_logits, unseen_y), seed=0)
    assert result["accuracy"] > 0.85
    assert result["auc"] > 0.9
    assert result["n_per_group"] == 64 and result["n_folds"] == 10


def test_loss_mia_is_at_chance_between_two_halves_of_unseen_data(memorised):
    _, _, unseen_logits, unseen_y = memorised
    losses = _losses(unseen_logits, unseen_y)
    accuracies, aucs = [], []
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(losses))
        result = loss_mia(losses[order[:128]], losses[order[128:]], seed=seed)
        accuracies.append(result["accuracy"])
        aucs.append(result["auc"])
    assert abs(np.mean(accuracies) - 0.5) < 0.07  # stated tolerance over 5 seeds
    assert abs(np.mean(aucs) - 0.5) < 0.1


def test_loss_mia_balances_groups_and_uses_fewer_folds_on_small_sets():
    rng = np.random.default_rng(1)
    result = loss_mia(rng.normal(size=6), rng.normal(size=500), seed=0)
    assert result["n_per_group"] == 6 and result["n_folds"] == 6


def test_row_scores_hand_checked_on_four_rows():
    from speech_unlearning.evaluation import accuracy_of, example_losses, loss_mia_or_none, mean_class_accuracy_of

    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    labels = np.array([0, 1, 1, 1])
    correct = logits.argmax(axis=1) == labels  # right, right, wrong, wrong
    assert accuracy_of(correct) == 0.5 and accuracy_of(correct[:0]) is None
    assert mean_class_accuracy_of(correct, labels) == pytest.approx((1.0 + 1 / 3) / 2)  # class 0: 1/1, class 1: 1/3
    right, wrong = math.log(1 + math.exp(-2)), math.log(1 + math.exp(2))
    assert example_losses(logits, labels) == pytest.approx([right, right, wrong, wrong])
    assert loss_mia_or_none(np.ones(1), np.ones(5)) is None  # one member: too small to attack, not an error


def test_svc_mia_calls_memorised_points_members_and_unseen_points_non_members(memorised):
    train_logits, train_y, unseen_logits, unseen_y = memorised
    probs, unseen_probs = _softmax(train_logits), _softmax(unseen_logits)
    shadow = dict(
        shadow_member_probs=probs[64:],
        shadow_member_labels=train_y[64:],
        shadow_nonmember_probs=unseen_probs[:64],
        shadow_nonmember_labels=unseen_y[:64],
    )
    on_members = svc_mia(**shadow, target_probs=probs[:64], target_labels=train_y[:64])
    on_unseen = svc_mia(**shadow, target_probs=unseen_probs[128:], target_labels=unseen_y[128:])
    assert on_members["confidence"] < 0.2  # most memorised points predicted member
    assert on_unseen["confidence"] > 0.7  # most unseen points predicted non-member
    assert set(on_members) >= {"confidence", "entropy", "m_entropy", "correctness", "prob"}


def test_modified_entropy_matches_hand_computed_values():
    probs = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
    # Label 0: -(1-0.7) ln 0.7 - 0.2 ln(1-0.2) - 0.1 ln(1-0.1)
    first = -0.3 * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    # Label 1: -(1-0.2) ln 0.2 - 0.7 ln(1-0.7) - 0.1 ln(1-0.1)
    second = -0.8 * math.log(0.2) - 0.7 * math.log(0.3) - 0.1 * math.log(0.9)
    assert modified_entropy(probs, np.array([0, 1])) == pytest.approx([first, second], rel=1e-12)
    assert first == pytest.approx(0.16217, abs=1e-5)
    # Plain entropy ignores the label; modified entropy grows when the model is confidently wrong.
    entropy = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert prediction_entropy(probs)[0] == pytest.approx(entropy)


def test_modified_entropy_stays_finite_for_saturated_probabilities():
    values = modified_entropy(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0]))
    assert values[0] == pytest.approx(0.0) and np.isfinite(values[1]) and values[1] > 10


# ---------------------------------------------------------------------------------------------
# Representation probe


def test_probe_separates_separable_embeddings_and_fails_on_shuffled_labels():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(300, 16))
    is_target = np.arange(300) < 150
    embeddings[is_target, :3] += 2.5
    separable = representation_probe(embeddings, is_target, seed=0)
    shuffled = representation_probe(embeddings, rng.permutation(is_target), seed=0)
    assert separable["balanced_accuracy"] > 0.95 and separable["auc"] > 0.98
    assert abs(shuffled["balanced_accuracy"] - 0.5) < 0.1 and abs(shuffled["auc"] - 0.5) < 0.1


# ---------------------------------------------------------------------------------------------
# Gap to retrain


def test_gap_to_retrain_arithmetic_on_hand_made_numbers():
    unlearned = {
        "accuracy": {"df": 0.80, "dr": 0.95, "test": 0.90, "n_test_forgotten": 10.0},
        "svc_mia": {"confidence": 0.30, "n_target": 5.0},
        "loss_mia": {"accuracy": 0.60},
    }
    retrained = {
        "accuracy": {"df": 0.88, "dr": 0.99, "test": 0.91, "n_test_forgotten": 12.0},
        "svc_mia": {"confidence": 0.10, "n_target": 5.0},
        "loss_mia": {"accuracy": 0.52},
    }
    gap = gap_to_retrain(unlearned, retrained)
    expected = {"accuracy.df": 8.0, "accuracy.dr": 4.0, "accuracy.test": 1.0, "svc_mia.confidence": 20.0}
    assert gap["gaps_pp"] == pytest.approx({**expected, "loss_mia.accuracy": 8.0})  # counts (n_*) are not gaps
    assert gap["avg_gap_terms"] == ["accuracy.df", "accuracy.dr", "accuracy.test", "svc_mia.confidence"]
    assert gap["avg_gap_pp"] == pytest.approx((8 + 4 + 1 + 20) / 4)
    # Without the SVC attack, the loss attack is the MIA term.
    without_svc = gap_to_retrain(unlearned, retrained, metrics={"accuracy", "loss_mia"})
    assert without_svc["avg_gap_pp"] == pytest.approx((8 + 4 + 1 + 8) / 4)


def test_a_class_splits_gap_takes_the_remaining_classes_test_accuracy_as_its_utility_term():
    """The forgotten class counts once, through Df: a model that forgot it exactly as Retrain did,
    and kept every other class, has no utility gap even though its full-test accuracy is lower."""
    unlearned = {"accuracy": {"df": 0.0, "dr": 0.97, "test": 0.70, "test_remaining": 0.93, "test_forgotten": 0.0},
                 "svc_mia": {"confidence": 0.9}}
    retrained = {"accuracy": {"df": 0.0, "dr": 0.97, "test": 0.72, "test_remaining": 0.93, "test_forgotten": 0.08},
                 "svc_mia": {"confidence": 0.9}}
    gap = gap_to_retrain(unlearned, retrained)
    assert gap["avg_gap_terms"] == ["accuracy.df", "accuracy.dr", "accuracy.test_remaining", "svc_mia.confidence"]
    assert gap["avg_gap_pp"] == pytest.approx(0.0, abs=1e-9)
    assert gap["gaps_pp"]["accuracy.test"] == pytest.approx(2.0)  # the paper's full-test figure is still there
    # The same models measured on the whole test set only (a sample split has no remaining classes).
    whole = {role: {"accuracy": {k: v for k, v in table["accuracy"].items() if k in ("df", "dr", "test")},
                    "svc_mia": table["svc_mia"]} for role, table in (("u", unlearned), ("r", retrained))}
    sample_gap = gap_to_retrain(whole["u"], whole["r"])
    assert "accuracy.test" in sample_gap["avg_gap_terms"] and sample_gap["avg_gap_pp"] == pytest.approx(2.0 / 4)
    # Pooled over runs the same rule holds.
    assert gap_of_means([(unlearned, retrained)])["avg_gap_terms"] == gap["avg_gap_terms"]


def test_gap_of_means_averages_each_side_before_comparing():
    def table(df: float, dr: float, svc: float | None = None) -> dict:
        values = {"accuracy": {"df": df, "dr": dr, "test": 0.9}, "loss_mia": {"accuracy": 0.5}}
        return values if svc is None else {**values, "svc_mia": {"confidence": svc}}

    pairs = [(table(0.90, 0.97, svc=0.2), table(0.80, 0.99, svc=0.3)), (table(0.70, 0.95), table(0.80, 0.99))]
    gap = gap_of_means(pairs)
    # Df: 0.80 vs 0.80 (+10 and -10 cancel); Dr: 0.96 vs 0.99; SVC is missing from one run, so the
    # loss attack, present in all, is the MIA term.
    assert gap["gaps_pp"]["accuracy.df"] == pytest.approx(0.0, abs=1e-9)
    assert gap["avg_gap_terms"] == ["accuracy.df", "accuracy.dr", "accuracy.test", "loss_mia.accuracy"]
    assert gap["avg_gap_pp"] == pytest.approx((0 + 3 + 0 + 0) / 4)
    per_run = [gap_to_retrain(*pair, metrics={"accuracy", "loss_mia"})["avg_gap_pp"] for pair in pairs]
    assert sum(per_run) / 2 == pytest.approx((10 + 2 + 10 + 4) / 4 / 2)  # the stricter pooling
    with pytest.raises(ValueError, match="no \\(unlearned, retrained\\) pair"):
        gap_of_means([])


# ---------------------------------------------------------------------------------------------
# A synthetic corpus with a class that only a trained representation separates


NUM_CLASSES, FORGET_CLASS, DIM = 4, 3, 16


def _synthetic_corpus_and_features() -> tuple[Corpus, np.ndarray]:
    """4 Gaussian classes; class 3 sits 1.2 away from class 2 along a direction no other class uses."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(NUM_CLASSES, DIM))
    centers *= 3 / np.linalg.norm(centers, axis=1, keepdims=True)
    offset = rng.normal(size=DIM)
    offset -= (offset @ centers[2]) / (centers[2] @ centers[2]) * centers[2]
    centers[FORGET_CLASS] = centers[2] + 1.2 * offset / np.linalg.norm(offset)
    utterances, rows = [], []
    for label in range(NUM_CLASSES):
        for take in range(200):
            split = "test" if take % 4 == 0 else "train"
            speaker = f"spk{take % 3}"
            utterances.append(Utterance(f"c{label}/{take}", f"/synthetic/c{label}/{take}.wav", label, speaker, split))
            rows.append(centers[label] + 0.5 * rng.normal(size=DIM))
    corpus = Corpus(
        name="synthetic",
        task="kws",
        root=Path("/synthetic"),
        label_names=tuple(f"class{c}" for c in range(NUM_CLASSES)),
        utterances=tuple(utterances),
        clip_seconds=1.0,
        fingerprint="synthetic-v1",
    )
    return corpus, np.asarray(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def unlearning_setup():
    """Original model, a retrained-without-class-3 model, and a head-only suppression of class 3."""
    corpus, features = _synthetic_corpus_and_features()
    split = class_split(corpus, ["class3"])
    config = TrainConfig(epochs=40, batch_size=32, lr=3e-3, patience=0, progress=False, device="cpu")
    train = ArrayData(features, corpus.labels, corpus.indices("train"))
    retain = ArrayData(features, corpus.labels, split.retain_indices(corpus))
    forget = ArrayData(features, corpus.labels, split.forget_indices(corpus))
    torch.manual_seed(0)
    original, retrained = TinyMLP(DIM, NUM_CLASSES), TinyMLP(DIM, NUM_CLASSES)
    fit(original, train, None, config)
    fit(retrained, retain, None, config)
    suppressed = copy.deepcopy(original)
    # The smallest bias shift that stops the head from ever predicting the class on Df.
    logits = predict_logits(original, forget)
    margin = logits[:, FORGET_CLASS] - np.delete(logits, FORGET_CLASS, axis=1).max(axis=1)
    with torch.no_grad():
        suppressed.head.bias[FORGET_CLASS] -= float(margin.max()) + 1.0
    return dict(corpus=corpus, features=features, split=split, original=original, retrained=retrained,
                suppressed=suppressed, forget=forget, retain=retain)


def test_relearning_restores_a_head_suppressed_model_faster_than_a_retrained_one(unlearning_setup):
    setup = unlearning_setup
    assert accuracy(setup["original"], setup["forget"]) > 0.95  # premises
    assert accuracy(setup["suppressed"], setup["forget"]) == 0.0
    assert accuracy(setup["retrained"], setup["forget"]) == 0.0
    config = RelearnConfig()
    for seed in range(2):
        suppressed = relearn_attack(setup["suppressed"], setup["forget"], setup["retain"], config, seed=seed)
        retrained = relearn_attack(setup["retrained"], setup["forget"], setup["retain"], config, seed=seed)
        assert suppressed["before"] == retrained["before"] == 0.0
        assert suppressed["after"] > retrained["after"] + 0.3
        assert suppressed["n_attack_forget"] == 30 and suppressed["n_held_out"] == 120


def test_relearning_is_read_early_and_at_the_end_of_its_schedule(unlearning_setup):
    """'early' is the accuracy a shorter attack would end on; 'after' the full schedule's."""
    setup = unlearning_setup
    attack = lambda config: relearn_attack(setup["suppressed"], setup["forget"], setup["retain"], config, seed=1)  # noqa: E731
    full = attack(RelearnConfig(steps=12, early_step=3, eval_every=5))
    assert {"at_step_3", "at_step_5", "at_step_10", "at_step_12"} <= set(full)
    assert full["early"] == full["at_step_3"] and full["after"] == full["at_step_12"]
    assert full["early"] == attack(RelearnConfig(steps=3, eval_every=5))["after"]
    # The suppressed model comes back within the first steps already, and further by the end.
    assert full["before"] < full["early"] <= full["after"]
    # A schedule shorter than the early step reads both at its last step.
    short = attack(RelearnConfig(steps=2))
    assert short["early"] == short["after"] == short["at_step_2"]
    with pytest.raises(ValueError, match="early_step"):
        RelearnConfig(early_step=0)


def test_relearn_attack_leaves_the_model_untouched(unlearning_setup):
    model = unlearning_setup["suppressed"]
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    relearn_attack(model, unlearning_setup["forget"], unlearning_setup["retain"], RelearnConfig(steps=3))
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


# ---------------------------------------------------------------------------------------------
# The full report


@pytest.fixture(scope="module")
def class_report(unlearning_setup):
    setup = unlearning_setup
    return evaluate_unlearning(
        setup["suppressed"], setup["features"], setup["corpus"], setup["split"],
        original=setup["original"], reference=setup["retrained"],
        unlearn_seconds=2.0, retrain_seconds=8.0, seed=0, progress=False,
    )


def test_report_scores_every_registered_metric_on_every_model(class_report):
    assert class_report["schema_version"] == SCHEMA_VERSION
    assert class_report["metrics"] == METRICS.names()
    for metric in METRICS.names():
        for role in METRICS.get(metric).roles:
            assert metric in class_report["models"][role], f"{role}/{metric} missing: {class_report['skipped']}"
    assert class_report["skipped"] == {}


def test_class_report_splits_test_accuracy_by_forgotten_class(class_report):
    models = class_report["models"]
    suppressed, original = models["unlearned"]["accuracy"], models["original"]["accuracy"]
    # The suppression was sized on Df, so a few unseen test rows of the class slip through.
    assert suppressed["df"] == 0.0 and suppressed["test_forgotten"] < 0.15 < 0.75 < original["test_forgotten"]
    # Removing class 3 from the output can only help the remaining classes (no more 2 -> 3 mistakes).
    assert suppressed["test_remaining"] >= original["test_remaining"] > 0.9
    assert suppressed["n_test_forgotten"] == 50 and suppressed["n_test_remaining"] == 150
    assert class_report["split"]["forgotten_classes"] == ["class3"]


def test_report_exposes_what_output_metrics_miss(class_report):
    """The suppressed model looks forgotten in its outputs, but its embeddings still identify the
    class as well as the original's do, and the relearning attack brings it back."""
    models = class_report["models"]
    probe = {role: models[role]["probe"]["balanced_accuracy"] for role in ("unlearned", "original")}
    assert probe["unlearned"] == pytest.approx(probe["original"])
    assert models["unlearned"]["relearn"]["after"] > models["retrained"]["relearn"]["after"]


def test_report_gap_directions_and_time(class_report):
    gap = class_report["gap_to_retrain"]
    unlearned, retrained = class_report["models"]["unlearned"], class_report["models"]["retrained"]
    expected = 100 * abs(unlearned["accuracy"]["dr"] - retrained["accuracy"]["dr"])
    assert gap["gaps_pp"]["accuracy.dr"] == pytest.approx(expected)
    assert not any(key.startswith("time.") for key in gap["gaps_pp"])
    assert class_report["models"]["unlearned"]["time"]["ratio"] == pytest.approx(0.25)
    for name in ("loss_mia", "svc_mia", "probe", "relearn"):
        direction = class_report["directions"][name]
        assert direction["forgotten_when"] and direction["retrained"] is not None
    assert class_report["directions"]["svc_mia"]["retrained"]["confidence"] == retrained["svc_mia"]["confidence"]


def test_class_report_gap_uses_the_remaining_classes_and_keeps_the_full_test_figure(class_report):
    gap = class_report["gap_to_retrain"]
    assert "accuracy.test_remaining" in gap["avg_gap_terms"] and "accuracy.test" not in gap["avg_gap_terms"]
    assert gap["avg_gap_pp"] == pytest.approx(np.mean([gap["gaps_pp"][term] for term in gap["avg_gap_terms"]]))
    assert "accuracy.test" in gap["gaps_pp"]
    assert any("SVC MIA shadow non-members: test recordings of the remaining classes" in n for n in class_report["notes"])


@pytest.mark.parametrize("kind", ["class", "sample"])
def test_svc_attack_learns_non_members_outside_the_forgotten_class(unlearning_setup, monkeypatch, kind):
    """The SVC attack's shadow non-members: Dtest without the forgotten class for a class split (its test
    rows look unseen to any model that forgot the class, which would teach the attack the class, not
    membership); every test row is a candidate for a sample split."""
    import speech_unlearning.evaluation.metrics as metrics_module

    setup = unlearning_setup
    seen = {}

    def spy(*args):
        seen["nonmember_labels"] = args[3]
        return svc_mia(*args)

    monkeypatch.setattr(metrics_module, "svc_mia", spy)
    split = setup["split"] if kind == "class" else sample_split(setup["corpus"], 0.1, seed=0)
    settings = EvalSettings(svc_max_per_group=10_000)  # no subsampling: the whole population is used
    evaluate_unlearning(setup["suppressed"], setup["features"], setup["corpus"], split, metrics=["svc_mia"],
                        settings=settings, progress=False)
    labels = set(seen["nonmember_labels"].tolist())
    if kind == "class":
        assert labels == set(range(NUM_CLASSES)) - {FORGET_CLASS}
        assert len(seen["nonmember_labels"]) == 150  # every remaining-class test row
    else:
        assert labels == set(range(NUM_CLASSES))


def test_write_report_writes_versioned_json_and_a_readable_table(class_report, tmp_path):
    json_path, md_path = write_report(tmp_path / "eval", class_report)
    saved = json.loads(json_path.read_text())
    assert saved["schema_version"] == SCHEMA_VERSION
    assert saved["models"]["unlearned"]["accuracy"]["df"] == class_report["models"]["unlearned"]["accuracy"]["df"]
    markdown = md_path.read_text()
    assert "| accuracy.df |" in markdown and "Avg. Gap to retrain" in markdown
    assert class_report["directions"]["loss_mia"]["forgotten_when"] in markdown
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["report.json", "report.md"]  # no temporaries
    summary = format_summary(class_report)
    assert "svc_mia.confidence" in summary and "gap (pp)" in summary


def test_sample_report_states_the_retrain_target_and_reuses_the_cache(unlearning_setup):
    setup = unlearning_setup
    split = sample_split(setup["corpus"], 0.1, seed=0)
    cache = {"unlearned/accuracy": {"df": 0.123, "dr": 0.5, "test": 0.5}}
    report = evaluate_unlearning(
        setup["original"], setup["features"], setup["corpus"], split, reference=setup["retrained"],
        metrics=["loss_mia", "accuracy"], cache=cache, progress=False,
    )
    assert report["metrics"] == ["accuracy", "loss_mia"]
    assert report["models"]["unlearned"]["accuracy"]["df"] == 0.123  # reused, not recomputed
    assert {"unlearned/loss_mia", "retrained/accuracy", "retrained/loss_mia"} <= set(cache)
    assert any("retrained model's Df accuracy" in note and "not 0" in note for note in report["notes"])
    assert any("Loss MIA non-members: all test recordings" in note for note in report["notes"])
    assert "original" not in report["models"]
    header = format_summary(report).splitlines()[0].split()
    assert header == ["metric", "unlearned", "retrained", "(target)", "gap", "(pp)"]  # no empty original column


def test_unknown_metric_name_lists_the_valid_ones(unlearning_setup):
    setup = unlearning_setup
    with pytest.raises(UnknownNameError, match="valid names: accuracy"):
        evaluate_unlearning(setup["original"], setup["features"], setup["corpus"], setup["split"], metrics=["acuracy"])


def test_settings_are_validated_by_field_name():
    with pytest.raises(ValueError, match="probe_folds"):
        EvalSettings(probe_folds=1)
    with pytest.raises(ValueError, match="fraction"):
        RelearnConfig(fraction=1.5)
