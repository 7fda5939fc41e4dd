"""Retrain ensembles in the grid: K Retrains and K unlearned models per split, the ensemble stage,
its report columns and verdicts, and `speech-unlearn evaluate` on several checkpoints.

The end-to-end grid runs the real stages on the embedded SID corpus with tiny models (one epoch,
a few seconds of training); one method is replaced by a stub that returns the Original unchanged,
which the report must call a no-op.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from speech_unlearning.cli.main import main
from speech_unlearning.config import ConfigError
from speech_unlearning.evaluation.retrain_ensemble import NOTHING_TO_FORGET, original_row, pool_of
from speech_unlearning.experiments.executors import Job, StageResult
from speech_unlearning.experiments.plan import build_plan
from speech_unlearning.experiments.presets import BenchConfig
from speech_unlearning.experiments.report import write_report_files
from speech_unlearning.experiments.runner import run_grid
from speech_unlearning.experiments.stages import STAGE_FUNCTIONS
from speech_unlearning.experiments.store import ResultStore
from speech_unlearning.io import atomic_directory

TINY_SID = {"sid-xvector": {"channels": 16, "embedding_dim": 16, "stats_channels": 32}}
NO_OP_METHOD = "finetune"  # replaced by a stub that hands back the Original


def grid_config(**changes) -> BenchConfig:
    values = dict(name="ensemble", tasks=("sid",), methods=("gradascent",), scenarios=("sample",), ratios=(0.05,),
                  seeds=(0,), retrain_seeds=3, unlearn_seeds=3)
    values.update(changes)
    return BenchConfig(**values)


def test_the_plan_lists_k_retrains_and_k_unlearned_runs_with_their_own_seeds(tmp_path, capsys):
    plan = build_plan(grid_config(seeds=(0, 1), methods=("alpha", "beta")), check_names=False)
    for seed in (0, 1):
        retrains = [r for r in plan.stage_runs("retrain") if r.config["seed"] == seed]
        init_seeds = [r.config["init_seed"] for r in retrains]
        assert len(retrains) == 3 and len(set(init_seeds)) == 3 and seed not in init_seeds
        assert len({r.config["split"]["seed"] for r in retrains}) == 1  # one split, one Dr
        for method in ("alpha", "beta"):
            unlearned = [r for r in plan.stage_runs("unlearn") if r.config["seed"] == seed and r.config["method"] == method]
            seeds = [r.config.get("unlearn_seed", seed) for r in unlearned]
            assert len(unlearned) == 3 and len(set(seeds)) == 3
    # Per split: 3 Retrain + 1 Original + 2 x 3 unlearned evaluations; ensemble rows for the Original
    # and each method (3 Retrains are too few for the Retrain-vs-Retrain halves).
    counts = plan.counts()
    assert counts["evaluate"] == 2 * (3 + 1 + 6) and counts["ensemble"] == 2 * 3
    ensemble = plan.stage_runs("ensemble")[0]
    assert set(ensemble.config["retrains"]) <= set(ensemble.deps)
    assert main(["bench", "--preset", "demo", "--set", "tasks=kws", "--set", "retrain_seeds=8", "--set",
                 "unlearn_seeds=8", "--plan-only", "--run-dir", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "8 Retrain(s) (seeds other than the Original's), 8 unlearned model(s) per method" in out
    assert any(line.split()[:2] == ["ensemble", str(build_plan(grid_config(tasks=("kws",), retrain_seeds=8,
               unlearn_seeds=8, methods=("all",), scenarios=("sample", "class"))).counts()["ensemble"])]
               for line in out.splitlines())


@pytest.mark.parametrize("seed", [0, 7])
def test_a_single_retrain_trains_with_a_seed_other_than_the_originals(seed):
    plan = build_plan(grid_config(seeds=(seed,), retrain_seeds=1, unlearn_seeds=1, methods=("alpha",), tune=True),
                      check_names=False)
    assert plan.counts()["ensemble"] == 0
    assert all("unlearn_seed" not in r.config for r in plan.stage_runs("unlearn"))  # one unlearning run keeps its key
    (original,) = plan.stage_runs("original")
    test_retrain, validation_retrain = sorted(plan.stage_runs("retrain"), key=lambda r: r.config["split"]["role"])
    assert validation_retrain.config["split"]["role"] == "validation"
    # Same split draw as the Original's seed, but its own initialisation and data order, for the
    # reported cells and for the tuning split alike.
    for retrain in (test_retrain, validation_retrain):
        assert retrain.config["seed"] == original.config["seed"] == seed
        assert retrain.config["init_seed"] != original.config["seed"]
    # K = 1 is replica 0 of the K >= 2 reference set: growing K later reuses it.
    larger = build_plan(grid_config(seeds=(seed,), retrain_seeds=3, unlearn_seeds=1, methods=("alpha",)),
                        check_names=False)
    assert test_retrain.key in {r.key for r in larger.stage_runs("retrain")}
    for key, value in (("retrain_seeds", 0), ("unlearn_seeds", 100)):
        with pytest.raises(ConfigError, match=key):
            grid_config(**{key: value})


def _stub_unlearn(job: Job) -> StageResult:
    """The real unlearning stage, except that NO_OP_METHOD returns the Original's checkpoint unchanged."""
    if job.config["method"] != NO_OP_METHOD:
        return STAGE_FUNCTIONS["unlearn"](job)
    source = Path(job.input(job.config["original"])["artefacts"]["checkpoint"])
    with atomic_directory(job.folder) as folder:
        shutil.copytree(source, folder / "model")
    return StageResult(metrics={"method": NO_OP_METHOD}, artefacts={"checkpoint": f"unlearn/{job.key[:16]}/model"},
                       seconds=0.01)


@pytest.fixture(scope="module")
def grid(tmp_path_factory, cache_dir, embedded_sid):
    """4 Retrains, 3 gradascent models and 3 no-op models on one sample split of embedded SID."""
    run_dir = tmp_path_factory.mktemp("ensemble-grid")
    config = grid_config(methods=("gradascent", NO_OP_METHOD), retrain_seeds=4, epochs=1, max_train_seconds=3.0,
                         unlearn_cap_seconds=0.5, relearn_attack=False, representation_probe=False,
                         model_options=TINY_SID)
    plan = build_plan(config)
    summary = run_grid(plan, run_dir, stages={**STAGE_FUNCTIONS, "unlearn": _stub_unlearn}, cache_dir=cache_dir,
                       extra={"device": "cpu"}, progress=False)
    with ResultStore.in_folder(run_dir) as store:
        errors = {r.label: (r.error or "").splitlines()[-1:] for r in store.records(status="failed")}
    assert summary.failed == [], errors
    return run_dir, plan


def _ensemble_rows(run_dir: Path) -> dict[str, dict]:
    with ResultStore.in_folder(run_dir) as store:
        return {r.config["method"]: r.metrics for r in store.records(stage="ensemble", status="done")}


def test_the_ensemble_stage_scores_each_row_against_the_retrains(grid):
    run_dir, plan = grid
    rows = _ensemble_rows(run_dir)
    assert set(rows) == {"original", "retrain", "gradascent", NO_OP_METHOD}
    method = rows["gradascent"]
    assert (method["n_unlearned"], method["n_retrains"]) == (3, 4)
    scores = method["scores"]
    assert 0.0 <= scores["forgetting_quality"]["forgetting_quality"] <= 1.0
    assert math.isfinite(scores["forgetting_quality"]["final_score"])
    assert 0.0 <= scores["ulira"]["auc"] <= 1.0 and 0.0 <= scores["ulira"]["tpr_at_1pct_fpr"] <= 1.0
    assert 0.0 <= scores["informed_attack"]["balanced_accuracy"] <= 1.0
    spread = method["spread"]
    assert {"accuracy.df", "accuracy.dr", "accuracy.test", "loss_mia.accuracy"} <= set(spread["comparisons"])
    assert "time.ratio" not in spread["comparisons"]  # wall time is not a forgetting metric
    assert spread["n_tested"] == len(spread["comparisons"]) and 0 <= spread["n_inside"] <= spread["n_tested"]
    assert method["verdict"] == spread["headline"] == (
        f"indistinguishable from Retrain on {spread['n_inside']} of {spread['n_tested']} metrics")
    df = spread["comparisons"]["accuracy.df"]
    assert df["n_retrains"] == 4 and df["n_method"] == 3 and df["test"] == "welch"
    # The Retrain-vs-Retrain row: two halves of 2, enough for the spread test, too few for the scores.
    reference = rows["retrain"]
    assert (reference["n_unlearned"], reference["n_retrains"]) == (2, 2) and reference["scores"] == {}
    assert set(reference["skipped"]) == {"forgetting_quality", "ulira", "informed_attack"}
    # The Original row says whether anything is measurably forgotten, by its own test.
    original = rows["original"]
    everything_inside = original["spread"]["n_inside"] == original["spread"]["n_tested"] > 0
    assert original["nothing_to_forget"] == everything_inside
    assert (original["verdict"] == NOTHING_TO_FORGET) == everything_inside
    with ResultStore.in_folder(run_dir) as store:
        (members,) = store.reference_sets().values()
    assert [m.config["init_seed"] for m in members] == [1000, 2000, 3000, 4000]
    # Each Retrain of the set trained from its own initialisation: four different sets of weights.
    weights = {(run_dir / m.artefacts["checkpoint"] / "model.safetensors").read_bytes() for m in members}
    assert len(weights) == 4


def test_a_method_that_returns_the_original_is_a_no_op_not_a_win(grid):
    run_dir, _ = grid
    rows = _ensemble_rows(run_dir)
    assert rows[NO_OP_METHOD]["no_op"] is True and rows[NO_OP_METHOD]["verdict"] == "no-op"
    assert rows["gradascent"]["no_op"] is False
    with ResultStore.in_folder(run_dir) as store:
        flags = {(r.config["method"], r.metrics.get("no_op")) for r in store.records(stage="evaluate")
                 if r.config["method"] in ("gradascent", NO_OP_METHOD)}
    assert flags == {("gradascent", False), (NO_OP_METHOD, True)}


def test_the_report_has_the_ensemble_columns_the_spread_and_the_legend(grid, capsys):
    run_dir, _ = grid
    assert main(["report", str(run_dir), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    markdown = (run_dir / "report" / "report.md").read_text()
    for text in (markdown, printed):
        for title in ("Forgetting quality F [higher = like Retrain]", "U-LiRA AUC (%) [50 = like Retrain]",
                      "U-LiRA TPR @ 1 % FPR", "Informed attack bal. acc. (%) [50 = like Retrain]",
                      "Retrains (mean ± std)", "Retrain vs Retrain (halves)", "indistinguishable from Retrain on"):
            assert title in text, title
    assert f"| {NO_OP_METHOD} (no-op) |" in markdown  # the paper table marks it too
    gradascent = next(line for line in markdown.splitlines() if line.startswith("| gradascent | 3/4 |"))
    assert "NA" not in gradascent.split("|")[3:9]  # F, final score, U-LiRA (3), informed: all computed
    assert "Two Retrain pools already score well below 1" in markdown.replace("\n", " ")
    html = (run_dir / "report" / "report.html").read_text()
    assert "Forgetting quality F" in html and "Retrains (mean ± std)" in html
    lines = (run_dir / "report" / "ensembles.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("task,corpus,model,seed,scenario")


def test_nothing_to_forget_when_the_original_sits_inside_the_retrain_spread():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=20)
    retrain_tables = [{"accuracy": {"df": 0.80 + d, "dr": 0.95 + d / 2, "test": 0.82 + d}}
                      for d in (-0.02, 0.0, 0.01, 0.02)]
    retrained = pool_of(rng.normal(size=(4, 20, 3)), retrain_tables)

    def row(df: float) -> dict:
        table = {"accuracy": {"df": df, "dr": 0.955, "test": 0.822}}
        return original_row(labels, pool_of(rng.normal(size=(1, 20, 3)), [table]), retrained, [table],
                            retrain_tables)

    inside, memorised = row(0.81), row(1.0)
    assert inside["nothing_to_forget"] is True and inside["verdict"] == NOTHING_TO_FORGET
    assert memorised["nothing_to_forget"] is False
    assert memorised["verdict"] == "indistinguishable from Retrain on 2 of 3 metrics"
    assert memorised["spread"]["comparisons"]["accuracy.df"]["inside"] is False


def test_the_final_scores_test_ratio_uses_the_remaining_classes_of_a_class_split():
    logits = np.zeros((2, 5, 3))
    sample_tables = [{"accuracy": {"df": 0.8, "dr": 0.9, "test": test}} for test in (0.7, 0.75)]
    class_tables = [{"accuracy": {**t["accuracy"], "df": 0.0, "test_remaining": t["accuracy"]["test"] + 0.1}}
                    for t in sample_tables]
    assert pool_of(logits, sample_tables).test_accuracy.tolist() == [0.7, 0.75]
    assert pool_of(logits, class_tables).test_accuracy.tolist() == [t["accuracy"]["test_remaining"] for t in class_tables]


def test_evaluate_scores_several_checkpoints_against_a_folder_of_retrains(grid, cache_dir, tmp_path, capsys):
    run_dir, plan = grid
    with ResultStore.in_folder(run_dir) as store:
        checkpoint = lambda run: run_dir / store.get(run.key).artefacts["checkpoint"]  # noqa: E731
        unlearned = [checkpoint(r) for r in plan.stage_runs("unlearn") if r.config["method"] == "gradascent"]
        retrains = [checkpoint(r) for r in plan.stage_runs("retrain")]
        original = checkpoint(plan.stage_runs("original")[0])
    folder = tmp_path / "retrains"
    folder.mkdir()
    for index, path in enumerate(retrains):
        (folder / f"r{index}").symlink_to(path.resolve(), target_is_directory=True)
    arguments = ["evaluate", *[item for path in unlearned for item in ("--checkpoint", str(path))],
                 "--reference", str(folder), "--original", str(original), "--metrics", "accuracy,loss_mia",
                 "--out", str(tmp_path / "eval"), "--cache-dir", str(cache_dir), "--no-progress", "--device", "cpu"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "Against 4 Retrains (3 unlearned model(s))" in out and "U-LiRA AUC" in out
    assert "indistinguishable from Retrain on" in out and "50 % = the unlearned models cannot be told" in out
    section = json.loads((tmp_path / "eval" / "report.json").read_text())["ensemble"]
    methods = [row["method"] for row in section["rows"]]
    assert methods == ["gradascent", "original", "retrain"]
    grid_rows = _ensemble_rows(run_dir)
    # Same models, same Df, same metric tables: the same forgetting score as the bench's ensemble stage.
    assert section["rows"][0]["scores"]["forgetting_quality"]["forgetting_quality"] == pytest.approx(
        grid_rows["gradascent"]["scores"]["forgetting_quality"]["forgetting_quality"])
