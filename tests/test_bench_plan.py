"""Presets, configuration errors, the plan of every preset, estimates, `bench --plan-only`."""

from __future__ import annotations

import dataclasses

import pytest

from speech_unlearning.cli.main import main
from speech_unlearning.config import ConfigError
from speech_unlearning.experiments.costs import estimate_plan, table_estimate
from speech_unlearning.experiments.plan import STAGES, build_plan, resolve_methods, tune_points
from speech_unlearning.experiments.presets import PAPER_BACKBONES, PRESETS, BenchConfig, resolve_config
from speech_unlearning.methods.base import split_method_name


def tunable_methods(methods) -> list[str]:
    """Methods with an lr or an epochs setting: the ones tuning has a grid for."""
    return [name for name in methods
            if {f.name for f in dataclasses.fields(split_method_name(name)[0].config_class)} & {"lr", "epochs"}]


def expected_counts(config: BenchConfig, methods: list[str]) -> dict[str, int]:
    """Runs per stage, counted independently of the plan builder. With tuning, each backbone's
    first seed adds one validation forget split (and its Retrain) per scenario, and one tune run
    per tunable method and grid point on it."""
    originals = sum(len(config.models_for(task)) * len(config.seeds) for task in config.tasks)
    retrains = validation_retrains = 0
    for task in config.tasks:
        scenarios = config.scenarios_for(task)
        splits_per_seed = len(config.ratios) * ("sample" in scenarios) + ("class" in scenarios) + ("speaker" in scenarios)
        retrains += len(config.models_for(task)) * len(config.seeds) * splits_per_seed
        validation_retrains += len(config.models_for(task)) * len(scenarios) if config.tune else 0
    points = len(config.tune_lr_scales) * len(config.tune_epoch_scales)
    return {"corpus": len(config.tasks), "original": originals, "retrain": retrains + validation_retrains,
            "tune": validation_retrains * len(tunable_methods(methods)) * points,
            "unlearn": retrains * len(methods), "evaluate": retrains * (len(methods) + 2), "ensemble": 0}


@pytest.mark.parametrize("name", PRESETS.names())
def test_plan_of_every_preset_has_the_right_counts(name):
    config = resolve_config(name)
    plan = build_plan(config)
    assert plan.counts() == expected_counts(config, plan.methods)
    assert len({run.key for run in plan.runs}) == len(plan.runs)
    position = {run.key: index for index, run in enumerate(plan.runs)}
    assert all(position[dep] < position[run.key] for run in plan.runs for dep in run.deps)


def test_demo_and_paper_grids_are_what_the_protocol_says():
    demo = build_plan(resolve_config("demo"))
    methods = len(demo.methods)
    assert methods == len(resolve_methods(resolve_config("demo"))) >= 5
    assert demo.counts() == {"corpus": 2, "original": 2, "retrain": 4, "tune": 0, "unlearn": 4 * methods,
                             "evaluate": 4 * (methods + 2), "ensemble": 0}
    paper = resolve_config("paper")
    assert paper.kws_models == paper.sid_models == PAPER_BACKBONES and len(PAPER_BACKBONES) == 7
    assert paper.ratios == tuple(round(0.01 * k, 2) for k in range(1, 11)) and paper.seeds == (0, 1, 2, 3, 4)
    counts = build_plan(paper).counts()
    assert counts["original"] == 2 * 7 * 5 and counts["retrain"] == 2 * 7 * 5 * (10 + 1)


def test_paper_plan_validates_and_prints_without_data(capsys):
    plan = build_plan(resolve_config("paper"))
    assert not plan.runnable
    assert any("speech_commands" in note for note in plan.notes) and any("voxceleb1" in note for note in plan.notes)
    assert main(["bench", "--preset", "paper", "--plan-only", "--run-dir", "/nonexistent/paper"]) == 0
    out = capsys.readouterr().out
    assert "the data path is required to run" in out
    for stage in STAGES:
        assert stage in out


def test_paper_run_without_data_stops_before_any_compute(tmp_path, capsys):
    assert main(["bench", "--preset", "paper", "--run-dir", str(tmp_path / "paper")]) == 2
    assert "data path is required" in capsys.readouterr().err
    assert not (tmp_path / "paper").exists()


def test_paper_plan_with_data_paths_uses_them(tmp_path):
    config = resolve_config("paper", {"speech_commands": str(tmp_path / "sc"), "voxceleb1": str(tmp_path / "vox")})
    assert config.corpus_spec("kws") == f"speech-commands:{tmp_path / 'sc'}"
    assert config.corpus_spec("sid") == f"voxceleb1:{tmp_path / 'vox'}"
    assert build_plan(config).notes  # folders do not exist: still says so
    (tmp_path / "sc").mkdir()
    (tmp_path / "vox").mkdir()
    assert build_plan(config).runnable


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ratios": "0.9"}, "ratios: 0.9 is outside"),
        ({"ratios": "0"}, "ratios: 0.0 is outside"),
        ({"seeds": "0,0"}, "seeds: has duplicates"),
        ({"seeds": "-1"}, "seeds: must be >= 0"),
        ({"tasks": "asr"}, "tasks: 'asr' is not one of"),
        ({"scenarios": "feature"}, "scenarios: 'feature' is not one of"),
        ({"budget_factor": "0"}, "budget_factor: must be > 0"),
        ({"workers": "0"}, "workers: must be >= 1"),
        ({"epochs": "many"}, "epochs: expected int"),
        ({"no_such_key": "1"}, "unknown key(s) 'no_such_key'"),
        ({"methods": "retrain"}, "methods: 'retrain' is a reference"),
        ({"seeds.x": "1"}, "only method_overrides, model_options, task_train take dotted keys"),
        ({"model_options.kws-resnet": "1"}, "expected model_options.NAME.KEY"),
    ],
)
def test_bad_values_are_named_before_any_compute(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_config("demo", overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"methods": "scrubb"}, "unknown method 'scrubb'"),
        ({"kws_models": "kws-resnett"}, "unknown model 'kws-resnett'"),
        ({"method_overrides.scrubb.lr": "1e-3"}, "method_overrides: 'scrubb' not among"),
        ({"model_options.kws-resnett.channels": "8"}, "model_options: unknown model"),
        ({"model_options.kws-resnet.channels": "0"}, "model kws-resnet: channels: must be positive"),
        ({"model_options.sid-xvector.width": "8"}, "model sid-xvector: unknown key"),
    ],
)
def test_unknown_names_are_rejected_when_planning(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_plan(resolve_config("demo", overrides))


def test_unknown_preset_lists_the_valid_ones(capsys):
    with pytest.raises(ConfigError, match="valid presets: demo, demo-real, fsdd, paper, quick, real"):
        resolve_config("papr")
    assert main(["bench", "--preset", "papr", "--plan-only"]) == 2
    assert "unknown preset 'papr'" in capsys.readouterr().err


def test_set_overrides_and_dotted_method_overrides():
    config = resolve_config("quick", {"seeds": "0,1,2", "ratios": "0.05", "method_overrides.scrub.lr": "1e-4",
                                      "methods": "scrub,gradascent"})
    assert config.seeds == (0, 1, 2) and config.ratios == (0.05,)
    assert config.method_overrides == {"scrub": {"lr": "1e-4"}}
    plan = build_plan(config)
    scrub = [run for run in plan.stage_runs("unlearn") if run.config["method"] == "scrub"]
    assert scrub and all(run.config["hyper"] == {"overrides": {"lr": "1e-4"}} for run in scrub)


def test_model_options_reach_every_run_of_their_backbone():
    config = resolve_config("demo", {"model_options.kws-resnet.channels": "24"})
    assert config.model_options["kws-resnet"]["channels"] == "24"
    assert config.model_options["sid-xvector"]  # the preset's other options are kept
    plan = build_plan(config)
    for run in plan.stage_runs("original") + plan.stage_runs("retrain"):
        assert run.config["model_options"] == config.model_options[run.config["model"]]


def test_yaml_preset_starts_from_its_base_and_cli_wins(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: quick\nseeds: [3]\nmethods: [scrub, salun]\nmethod_overrides:\n  scrub: {epochs: 2}\n")
    config = resolve_config(str(path), {"ratios": "0.02"})
    assert config.name == "mine" and config.seeds == (3,) and config.ratios == (0.02,)
    assert config.scenarios == ("sample", "class", "speaker")  # from the quick base
    assert config.method_overrides == {"scrub": {"epochs": 2}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config(str(bad))
    with pytest.raises(FileNotFoundError, match="preset file not found"):
        resolve_config(str(tmp_path / "absent.yaml"))


def test_adding_a_seed_keeps_the_keys_of_existing_runs():
    one = build_plan(resolve_config("demo"))
    two = build_plan(resolve_config("demo", {"seeds": "0,1"}))
    assert {run.key for run in one.runs} < {run.key for run in two.runs}
    changed = build_plan(resolve_config("demo", {"epochs": "3"}))
    assert not {run.key for run in one.stage_runs("original")} & {run.key for run in changed.stage_runs("original")}


def test_a_step_matched_retrain_changes_only_the_retrain_runs():
    standard = build_plan(resolve_config("demo"))
    matched = build_plan(resolve_config("demo", {"retrain_match": "steps"}))
    assert {r.key for r in standard.stage_runs("original")} == {r.key for r in matched.stage_runs("original")}
    assert not {r.key for r in standard.stage_runs("retrain")} & {r.key for r in matched.stage_runs("retrain")}
    assert {r.config["train"].get("match") for r in matched.stage_runs("retrain")} == {"steps"}
    # The default adds nothing to a run's configuration, so grids made before the option keep their keys.
    assert all("match" not in r.config["train"] for r in standard.stage_runs("retrain"))
    with pytest.raises(ConfigError, match="retrain_match"):
        resolve_config("demo", {"retrain_match": "seconds"})


def test_every_retrain_starts_from_its_original_with_a_seed_of_its_own():
    """One Retrain: each is the method `retrain` applied to the Original of its seed (so it waits for
    it and names it), validation Retrains of the tuning stage included, never with the Original's seed."""
    plan = build_plan(resolve_config("quick", {"tune": "true", "retrain_seeds": "2"}), check_names=False)
    originals = {run.key: run for run in plan.stage_runs("original")}
    retrains = plan.stage_runs("retrain")
    assert len(retrains) > 2 * len(originals)
    for retrain in retrains:
        original = originals[retrain.config["original"]]
        assert original.key in retrain.deps
        assert (original.config["seed"], original.config["model"]) == (retrain.config["seed"], retrain.config["model"])
        assert retrain.config["init_seed"] != original.config["seed"]


def test_a_change_of_what_evaluations_measure_reruns_the_evaluations_and_nothing_upstream(monkeypatch):
    from speech_unlearning.experiments import plan as plan_module

    config = resolve_config("demo", {"retrain_seeds": "2", "unlearn_seeds": "2"})
    current = build_plan(config)
    monkeypatch.setattr(plan_module, "METRIC_RULES", plan_module.METRIC_RULES - 1)
    earlier = build_plan(config)
    for stage in ("corpus", "original", "retrain", "unlearn"):
        assert {r.key for r in current.stage_runs(stage)} == {r.key for r in earlier.stage_runs(stage)}, stage
    for stage in ("evaluate", "ensemble"):  # the ensemble rows read the evaluations
        assert not {r.key for r in current.stage_runs(stage)} & {r.key for r in earlier.stage_runs(stage)}, stage


def test_speaker_unlearning_is_planned_for_kws_only():
    plan = build_plan(resolve_config("quick"))
    speaker = [run for run in plan.stage_runs("retrain") if run.config["split"]["scenario"] == "speaker"]
    assert speaker and {run.config["task"] for run in speaker} == {"kws"}


def test_the_real_preset_tunes_every_method_alike_and_its_demo_half_does_not():
    """A fair comparison: every method with an lr or epochs setting, calibrated included, gets the
    same tuning grid on validation forget splits; the demo's real half stays at the defaults."""
    plan = build_plan(resolve_config("real"))
    tuned = {(g.scenario, g.method) for g in plan.tune_groups.values()}
    scenarios = {"sample", "class", "speaker"}
    assert "calibrated" in tunable_methods(plan.methods)
    assert tuned == {(s, m) for s in scenarios for m in tunable_methods(plan.methods)}
    assert all(len(g.run_keys) == len(tune_points(plan.config)) for g in plan.tune_groups.values())
    assert build_plan(resolve_config("demo-real")).counts()["tune"] == 0


def test_task_train_sets_one_tasks_schedule_for_its_originals_and_retrains_only():
    """`task_train.sid.epochs` trains the speaker model's Originals and Retrains longer; the keyword
    model keeps the grid-wide setting, and the train settings are part of every run key."""
    def epochs_by_task(plan):
        trained = plan.stage_runs("original") + plan.stage_runs("retrain")
        return {(run.stage, run.config["task"]): run.config["train"]["epochs"] for run in trained}

    longer = resolve_config("demo", {"task_train.sid.epochs": "3"})
    assert epochs_by_task(build_plan(longer)) == {
        ("original", "kws"): 8, ("retrain", "kws"): 8, ("original", "sid"): 3, ("retrain", "sid"): 3,
    }
    assert {run.key for run in build_plan(longer).stage_runs("original")} != {
        run.key for run in build_plan(resolve_config("demo")).stage_runs("original")
    }
    with pytest.raises(ConfigError, match="task_train.sid.epochs"):
        resolve_config("demo", {"task_train.sid.epochs": "0"})


def test_tuning_plan_uses_validation_splits_and_every_grid_point():
    config = resolve_config("demo", {"tune": "true", "methods": "scrub,gradascent"})
    plan = build_plan(config)
    points = tune_points(config)
    assert len(points) == len(config.tune_lr_scales) * len(config.tune_epoch_scales)
    groups = list(plan.tune_groups.values())
    assert len(groups) == 2 * 2 * 2  # tasks x scenarios x methods
    assert plan.counts()["tune"] == len(groups) * len(points)
    validation_retrains = [r for r in plan.stage_runs("retrain") if r.config["split"]["role"] == "validation"]
    assert len(validation_retrains) == 2 * 2
    assert all(r.config["split"]["seed"] != r.config["seed"] for r in validation_retrains)
    for run in plan.stage_runs("unlearn"):
        group = plan.tune_groups[run.config["hyper"]["tuned"]]
        assert set(group.run_keys) <= set(run.deps)


def test_estimate_uses_measured_timings_when_present():
    plan = build_plan(resolve_config("demo", {"seeds": "0,1"}))
    originals = plan.stage_runs("original")
    fresh = estimate_plan(plan)
    assert fresh.measured_stages == ()
    assert fresh.seconds["original"] == pytest.approx(sum(table_estimate(run, plan) for run in originals))
    measured = next(run for run in originals if run.config["task"] == "kws")
    refined = estimate_plan(plan, {measured.key: {"config": measured.config, "seconds": 1000.0}})
    assert refined.measured_stages == ("original",)
    # The finished run costs nothing; the other kws original takes the measured mean; sid keeps the table.
    sid = [run for run in originals if run.config["task"] == "sid"]
    assert refined.seconds["original"] == pytest.approx(1000.0 + sum(table_estimate(run, plan) for run in sid))


def test_estimate_scales_small_models_by_their_configured_width():
    """The demo's narrow models cost what their parameter count says, not the default width's."""
    from speech_unlearning.experiments.costs import WIDTH_EXPONENTS
    from speech_unlearning.models.registry import create_model, model_info

    def parameters(name, **options):
        return sum(p.numel() for p in create_model(name, 10, **options).parameters())

    narrow = build_plan(resolve_config("demo"))
    default_width = build_plan(dataclasses.replace(resolve_config("demo"), model_options={}))
    for task, model in (("kws", "kws-resnet"), ("sid", "sid-xvector")):
        # An evaluation's estimate is linear in the model's cost (training stages are capped).
        narrow_run, default_run = (next(r for r in plan.stage_runs("evaluate") if r.config["task"] == task)
                                   for plan in (narrow, default_width))
        options = narrow_run.config["model_options"]
        assert options and not default_run.config.get("model_options")
        ratio = table_estimate(narrow_run, narrow) / table_estimate(default_run, default_width)
        exponent = WIDTH_EXPONENTS[model_info(model).family]
        assert ratio == pytest.approx((parameters(model, **options) / parameters(model)) ** exponent)
        assert ratio < 0.6


def test_estimate_counts_the_clips_of_a_speech_commands_folder(tmp_path):
    """Before a Speech Commands corpus is loaded, its training cost follows the folder's clip
    count (keyword folders only, not the background noise), with no audio read."""
    def original_estimate(clips_per_word: int) -> float:
        root = tmp_path / f"sc{clips_per_word}"
        for word in ("yes", "no", "_background_noise_"):
            (root / word).mkdir(parents=True)
            for index in range(clips_per_word if word != "_background_noise_" else 50):
                (root / word / f"{index:08x}_nohash_0.wav").touch()
        plan = build_plan(resolve_config("real", {"speech_commands": str(root), "seeds": "0"}))
        return table_estimate(next(r for r in plan.stage_runs("original") if r.config["task"] == "kws"), plan)

    assert original_estimate(200) == pytest.approx(2 * original_estimate(100), rel=0.01)


def test_plan_only_prints_counts_and_estimate(tmp_path, capsys):
    assert main(["bench", "--preset", "quick", "--plan-only", "--run-dir", str(tmp_path / "q")]) == 0
    out = capsys.readouterr().out
    plan = build_plan(resolve_config("quick"))
    for stage, count in plan.counts().items():
        assert any(line.split()[:2] == [stage, str(count)] for line in out.splitlines())
    assert "Estimated time" in out
    assert not (tmp_path / "q").exists()  # planning writes nothing
