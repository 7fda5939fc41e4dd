"""The experiment grid as a list of runs with dependencies, built before anything runs.

A `Run` is one unit of work of one stage:

- `corpus`   load (or build) a corpus and cache the features its backbones need;
- `original` train the original model once per (task, corpus, backbone, seed);
- `retrain`  train the Retrain reference on Dr once per split (and backbone), from the Original;
- `tune`     one point of a method's hyper-parameter grid on a validation forget split (--tune);
- `unlearn`  one unlearning method applied to an original model for one split;
- `evaluate` the metrics of one model (Original, Retrain or an unlearned one) on one split;
- `ensemble` with `retrain_seeds` >= 2: one row of a split scored against its K Retrains (the
             Retrain spread, the indistinguishability test and, with K >= 3 on both sides, the
             forgetting score, U-LiRA and the informed attack); see experiments/ensembles.py.

A split has `retrain_seeds` = K Retrains (its reference set), all with the same Dr and seeds
other than the Original's: a Retrain that shared the Original's initialisation and data order
would sit closer to it than a fresh training does, which favours methods that barely move (so
even K = 1 trains with its own seed). With `unlearn_seeds` = K > 1 every method runs K times on
the split, each with its own seed. Each of them has its own evaluation.

Each run is identified by the sha256 of its canonical config (`Run.key`); the config of a run
holds the keys of the runs it builds on, so a change anywhere upstream gives new keys
downstream and a rerun of the grid reuses exactly the runs whose inputs did not change.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..config import ConfigError
from ..io import sha256_json
from ..methods.retrain import RETRAIN_SEED_OFFSET, retrain_seed
from .presets import REFERENCE_NAMES, BenchConfig

STAGES = ("corpus", "original", "retrain", "tune", "unlearn", "evaluate", "ensemble")
# Seeds of the validation forget splits used for tuning are offset so they never coincide
# with a test split's draw.
VALIDATION_SEED_OFFSET = 10_000
# Replica r of a split's Retrains (r = 0 included) trains with methods.retrain.retrain_seed(seed, r), so
# never with the Original's seed; unlearned replica u >= 1 runs with seed + REPLICA_SEED_OFFSET * u (replica 0 keeps
# the split's seed, as a single unlearning run always did).
REPLICA_SEED_OFFSET = RETRAIN_SEED_OFFSET
# Part of every evaluation's key: raised when what an evaluation measures changes, so that a store
# re-evaluates rather than mixes two definitions in one table. 2: class requests take the remaining
# classes' test accuracy as the Avg. Gap's utility term and leave the forgotten class out of the SVC
# attack's non-members; the relearning attack is read early and at the end of its schedule.
METRIC_RULES = 2
# The Retrain-vs-Retrain row compares two halves of the Retrains, and the spread test needs two
# values on each side.
REFERENCE_ROW_MIN_RETRAINS = 4


@dataclass(frozen=True)
class Run:
    """One unit of work. `config` is canonical JSON data; `deps` are the keys of its inputs."""

    stage: str
    config: dict[str, Any]
    deps: tuple[str, ...] = ()
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", sha256_json(self.config))

    @property
    def short(self) -> str:
        return self.key[:12]

    @property
    def label(self) -> str:
        """A one-line description, e.g. "unlearn kws kws-resnet seed=0 sample 5% scrub"."""
        config = self.config
        parts = [self.stage, config.get("task", "")]
        if "model" in config:
            parts.append(config["model"])
        if "seed" in config:
            parts.append(f"seed={config['seed']}")
        for name in ("init_seed", "unlearn_seed"):
            if name in config:
                parts.append(f"{name}={config[name]}")
        split = config.get("split")
        if split:
            parts.append(describe_forget_split(split))
        if "method" in config:
            parts.append(config["method"])
        if "point" in config:
            parts.append(",".join(f"{k}={v}" for k, v in sorted(config["point"].items())))
        return " ".join(str(p) for p in parts if p != "")


def describe_forget_split(split: dict[str, Any]) -> str:
    """"sample 5%", "class x1", "speaker x1", with "(validation)" for tuning splits."""
    if split["scenario"] == "sample":
        text = f"sample {split['ratio'] * 100:g}%"
    else:
        text = f"{split['scenario']} x{split['count']}"
    return text + (" (validation)" if split.get("role") == "validation" else "")


@dataclass(frozen=True)
class TuneGroup:
    """The grid of one method for one (task, backbone, scenario): its runs and its group key."""

    key: str
    task: str
    corpus: str
    model: str
    scenario: str
    method: str
    run_keys: tuple[str, ...]
    points: tuple[dict[str, float], ...]


@dataclass
class Plan:
    """Every run of a grid, in an order where each run comes after its dependencies."""

    config: BenchConfig
    runs: list[Run]
    notes: list[str] = field(default_factory=list)
    tune_groups: dict[str, TuneGroup] = field(default_factory=dict)
    methods: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.by_key = {run.key: run for run in self.runs}

    def stage_runs(self, stage: str) -> list[Run]:
        return [run for run in self.runs if run.stage == stage]

    def counts(self) -> dict[str, int]:
        """Number of runs per stage (every stage listed, zeros included)."""
        return {stage: len(self.stage_runs(stage)) for stage in STAGES}

    @property
    def runnable(self) -> bool:
        """False when data the grid needs is missing (the plan still prints)."""
        return not self.config.missing_data()


def load_methods() -> None:
    """Fill METHODS: importing the methods package registers every method."""
    from .. import methods  # noqa: F401


def resolve_methods(config: BenchConfig) -> tuple[str, ...]:
    """The grid's method names; typos raise ConfigError listing the valid names.

    "all" expands to every registered method, "all+superloss" to those and every "+superloss"
    variant. Names of references the grid always runs (original, retrain) are left out.
    """
    from ..methods.base import method_names

    load_methods()
    base = [name for name in method_names() if name not in REFERENCE_NAMES]
    variants = [name for name in method_names(with_superloss=True) if name not in base and
                name.split("+")[0] not in REFERENCE_NAMES]
    names: list[str] = []
    for name in config.methods:
        if name == "all":
            names += base
        elif name == "all+superloss":
            names += base + variants
        elif name in base or name in variants:
            names.append(name)
        else:
            raise ConfigError(
                f"methods: unknown method {name!r}; valid methods: {', '.join(base + variants)}, all or all+superloss"
            )
    return tuple(dict.fromkeys(names))


def check_models(config: BenchConfig) -> None:
    """Raise ConfigError naming any backbone that is not registered or any bad model option."""
    from ..models.registry import model_info, model_names, resolve_options

    valid = model_names()
    for task in config.tasks:
        for name in config.models_for(task):
            if name not in valid:
                raise ConfigError(f"{task}_models: unknown model {name!r}; valid models: {', '.join(valid)}")
            info = model_info(name)
            options = _model_options(config, name)
            # Whether `source` (pretrained weights) exists is checked when the model loads, not at
            # planning time; here it only needs a value, as create_model would default it.
            if info.default_source is not None:
                options.setdefault("source", info.default_source)
            resolve_options(info.options_class, options, name)  # ConfigError naming the option


def check_method_overrides(config: BenchConfig, methods: Iterable[str]) -> None:
    """method_overrides may only name methods of the grid, model_options only registered models."""
    methods = list(methods)
    unknown = sorted(set(config.method_overrides) - set(methods))
    if unknown:
        raise ConfigError(
            f"method_overrides: {', '.join(map(repr, unknown))} not among the grid's methods ({', '.join(methods)})"
        )
    from ..methods import parse_method_config, split_method_name

    # Build each method's config now, so a misspelt hyper-parameter or an out-of-range value
    # stops the grid before any corpus or model is computed, not at its first unlearning run.
    for name, overrides in config.method_overrides.items():
        method_class, with_superloss = split_method_name(name)
        try:
            parse_method_config(method_class, with_superloss, overrides, name)
        except ConfigError as error:
            raise ConfigError(f"method_overrides: {error}") from None
    from ..models.registry import model_names

    # Options for a registered backbone the grid does not use are harmless (a preset may carry
    # them for its default backbones); a name that is not a model at all is a typo.
    unknown = sorted(set(config.model_options) - set(model_names()))
    if unknown:
        raise ConfigError(f"model_options: unknown model(s) {', '.join(map(repr, unknown))}")


def _corpus_label(config: BenchConfig, task: str) -> str:
    """The corpus spec when resolvable, else a placeholder that says which path is missing."""
    try:
        return config.corpus_spec(task)
    except ConfigError:
        return f"{config.data}:<{config.data_key(task)} required>"


def _train_settings(config: BenchConfig, task: str) -> dict[str, Any]:
    """Epochs and time cap of `task`, and the recipe unless it is early-stop (the only recipe
    before the option existed, so the run keys of grids made then stay the same)."""
    settings: dict[str, Any] = {
        "epochs": config.train_setting(task, "epochs"), "max_seconds": config.train_setting(task, "max_train_seconds"),
    }
    if config.recipe != "early-stop":
        settings["recipe"] = config.recipe
    return settings


def _retrain_settings(config: BenchConfig, task: str) -> dict[str, Any]:
    """The Original's settings, plus the step match when asked for (absent by default, so the
    run keys of grids made before the option existed stay the same)."""
    settings = _train_settings(config, task)
    if config.retrain_match == "steps":
        settings["match"] = "steps"
    return settings


def unlearn_seed(seed: int, replica: int) -> int:
    """Seed of unlearned replica `replica` (replica 0: the split's seed)."""
    return seed + REPLICA_SEED_OFFSET * replica


def _model_options(config: BenchConfig, model: str) -> dict[str, Any]:
    """Options for create_model: the grid's `model_options` for this backbone and, with model_dir
    set, `source` = model_dir/<name> for a backbone that loads pretrained weights."""
    options = dict(config.model_options.get(model, {}))
    if config.model_dir is None:
        return options
    from ..models.registry import MODEL_INFO

    info = MODEL_INFO.get(model)
    if info is not None and info.default_source is not None:
        options.setdefault("source", str(Path(config.model_dir).expanduser().resolve() / model))
    return options


def _test_forget_splits(config: BenchConfig, task: str, seed: int) -> list[dict[str, Any]]:
    """The test forget splits of one seed: one per ratio for sample, one per other scenario."""
    splits = []
    for scenario in config.scenarios_for(task):
        if scenario == "sample":
            splits += [{"scenario": "sample", "ratio": ratio, "seed": seed, "role": "test"} for ratio in config.ratios]
        else:
            count = config.class_count if scenario == "class" else config.speaker_count
            splits.append({"scenario": scenario, "count": count, "seed": seed, "role": "test"})
    return splits


def _validation_forget_split(config: BenchConfig, scenario: str, seed: int) -> dict[str, Any]:
    """The forget split that tuning selects on, drawn with an offset seed (never a test split)."""
    draw = seed + VALIDATION_SEED_OFFSET
    if scenario == "sample":
        ratio = config.tune_ratio if config.tune_ratio is not None else statistics.median_low(sorted(config.ratios))
        return {"scenario": "sample", "ratio": ratio, "seed": draw, "role": "validation"}
    count = config.class_count if scenario == "class" else config.speaker_count
    return {"scenario": scenario, "count": count, "seed": draw, "role": "validation"}


def tune_points(config: BenchConfig) -> tuple[dict[str, float], ...]:
    """The documented tuning grid: every (lr scale, epoch scale) pair, as multiples of the defaults."""
    return tuple(
        {"lr_scale": lr, "epoch_scale": epochs} for lr in config.tune_lr_scales for epochs in config.tune_epoch_scales
    )


class _PlanBuilder:
    """Accumulates runs without duplicates (same config = same run)."""

    def __init__(self, config: BenchConfig, methods: tuple[str, ...], check_names: bool):
        self.config = config
        self.check_names = check_names
        self.methods = methods
        self.runs: dict[str, Run] = {}
        self.tune_groups: dict[str, TuneGroup] = {}

    def add(self, stage: str, config: dict[str, Any], deps: Iterable[str] = ()) -> Run:
        run = Run(stage, {"stage": stage, **config}, tuple(dict.fromkeys(deps)))
        return self.runs.setdefault(run.key, run)

    def budget(self) -> dict[str, Any]:
        if self.config.unlearn_cap_steps is not None:  # keyed only when set: older folders keep their run keys
            return {"cap_steps": self.config.unlearn_cap_steps}
        return {"factor": self.config.budget_factor, "cap_seconds": self.config.unlearn_cap_seconds}

    def eval_options(self) -> dict[str, Any]:
        return {"relearn_attack": self.config.relearn_attack, "representation_probe": self.config.representation_probe,
                "metric_rules": METRIC_RULES}

    def build_task(self, task: str) -> None:
        config = self.config
        spec = _corpus_label(config, task)
        models = config.models_for(task)
        # One embedded build makes both tasks' corpora: the second task's corpus run waits for the
        # first, so two workers never synthesise the same corpus side by side.
        earlier = [run.key for run in self.runs.values() if run.stage == "corpus"] if config.data == "embedded" else []
        corpus = self.add("corpus", {"task": task, "corpus": spec, "models": sorted(models)}, earlier)
        for model in models:
            base = {"task": task, "corpus": spec, "model": model, "model_options": _model_options(config, model)}
            for seed in config.seeds:
                original = self.add("original", {**base, "seed": seed, "train": _train_settings(config, task)}, [corpus.key])
                groups = self.build_tuning(base, corpus, original) if config.tune and seed == config.seeds[0] else {}
                for split in _test_forget_splits(config, task, seed):
                    self.build_cell(base, corpus, original, split, groups.get(split["scenario"], {}))

    def build_cell(self, base: dict, corpus: Run, original: Run, split: dict, groups: dict[str, TuneGroup]) -> None:
        """The Retrains, every method and the evaluations for one split of one original model; the
        ensemble rows when the split has several Retrains."""
        seed = original.config["seed"]
        retrains = self.retrains(base, corpus, original, split)
        retrain = retrains[0]  # draws the split, sets the time budget, is every per-run gap's reference
        cell = {**base, "seed": seed, "split": split, "original": original.key, "retrain": retrain.key}
        # The Retrain's own evaluation comes first: every other evaluation of the cell reuses its
        # metric table as the reference instead of recomputing it. Unlearning runs do not name it,
        # so a change to the evaluations alone (METRIC_RULES, the attack options) never reruns them.
        reference = self.add("evaluate", {**cell, "method": "retrain", "subject": retrain.key,
                                          "options": self.eval_options()}, [original.key, retrain.key])
        scored = {**cell, "reference_eval": reference.key}
        retrain_evals = [reference] + [
            self.add("evaluate", {**scored, "method": "retrain", "subject": replica.key, "options": self.eval_options()},
                     [original.key, retrain.key, replica.key, reference.key])
            for replica in retrains[1:]
        ]
        original_eval = self.add("evaluate", {**scored, "method": "original", "subject": original.key,
                                              "options": self.eval_options()}, [original.key, retrain.key, reference.key])
        rows = {"original": ([original], [original_eval]), "retrain": ([], [])}
        for method in self.methods:
            group = groups.get(method)
            if group is not None:
                hyper = {"tuned": group.key}
                tune_deps = group.run_keys
            else:
                hyper = {"overrides": dict(self.config.method_overrides.get(method, {}))}
                tune_deps = ()
            unlearned, evaluations = [], []
            for replica in range(self.config.unlearn_seeds):
                # Replica 0 has no seed key, so a grid of one unlearning run per split keeps its keys.
                seeded = {"unlearn_seed": unlearn_seed(seed, replica)} if replica else {}
                unlearn = self.add(
                    "unlearn", {**cell, "method": method, "hyper": hyper, "budget": self.budget(), **seeded},
                    [original.key, retrain.key, *tune_deps],
                )
                evaluation = self.add(
                    "evaluate", {**scored, "method": method, "subject": unlearn.key, "options": self.eval_options()},
                    [unlearn.key, original.key, retrain.key, reference.key])
                unlearned.append(unlearn)
                evaluations.append(evaluation)
            rows[method] = (unlearned, evaluations)
        if len(retrains) < REFERENCE_ROW_MIN_RETRAINS:
            del rows["retrain"]
        if len(retrains) >= 2:
            for method, (subjects, evaluations) in rows.items():
                self.add_ensemble(scored, method, subjects, evaluations, retrains, retrain_evals, original)

    def retrains(self, base: dict, corpus: Run, original: Run, split: dict) -> list[Run]:
        """The split's reference set: `retrain_seeds` Retrains, each with a seed other than the
        Original's (the split itself is still drawn from the Original's seed)."""
        return [self.retrain(base, corpus, original, split, replica) for replica in range(self.config.retrain_seeds)]

    def retrain(self, base: dict, corpus: Run, original: Run, split: dict, replica: int = 0) -> Run:
        """Retrain `replica` of `split`: the method `retrain` applied to `original` (its starting point
        and recipe) on the split's Dr, with `retrain_seed(seed, replica)`."""
        seed = original.config["seed"]
        settings = {**base, "seed": seed, "split": split, "train": _retrain_settings(self.config, base["task"]),
                    "init_seed": retrain_seed(seed, replica), "original": original.key}
        return self.add("retrain", settings, [corpus.key, original.key])

    def add_ensemble(self, cell: dict, method: str, subjects: list[Run], evaluations: list[Run],
                     retrains: list[Run], retrain_evals: list[Run], original: Run) -> Run:
        """One ensemble row: `subjects` (unlearned models, the Original, or none for the Retrain-vs-Retrain
        reference) against the split's Retrains, with every evaluation it reads."""
        keys = lambda runs: [run.key for run in runs]  # noqa: E731
        config = {**cell, "method": method, "subjects": keys(subjects), "evaluations": keys(evaluations),
                  "retrains": keys(retrains), "retrain_evaluations": keys(retrain_evals)}
        deps = [original.key, *keys(subjects), *keys(evaluations), *keys(retrains), *keys(retrain_evals)]
        return self.add("ensemble", config, deps)

    def build_tuning(self, base: dict, corpus: Run, original: Run) -> dict[str, dict[str, TuneGroup]]:
        """Validation retrains and tune runs for one backbone; returns {scenario: {method: group}}."""
        groups: dict[str, dict[str, TuneGroup]] = {}
        seed = original.config["seed"]
        for scenario in self.config.scenarios_for(base["task"]):
            split = _validation_forget_split(self.config, scenario, seed)
            # Tuning compares with a Retrain made the way the reported cells' are (own seed).
            retrain = self.retrain(base, corpus, original, split)
            for method in self.methods:
                if self.tunable(method):
                    groups.setdefault(scenario, {})[method] = self.tune_group(base, original, retrain, split, method)
        return groups

    def tunable(self, method: str) -> bool:
        """Methods with neither an lr nor an epochs setting (e.g. one-shot ones) have nothing to tune."""
        if not self.check_names:
            return True
        from ..methods.base import split_method_name

        fields = {f.name for f in dataclasses.fields(split_method_name(method)[0].config_class)}
        return bool(fields & {"lr", "epochs"})

    def tune_group(self, base: dict, original: Run, retrain: Run, split: dict, method: str) -> TuneGroup:
        points = tune_points(self.config)
        overrides = dict(self.config.method_overrides.get(method, {}))
        keys = []
        for point in points:
            run = self.add(
                "tune",
                {**base, "seed": original.config["seed"], "split": split, "method": method, "point": point,
                 "overrides": overrides, "budget": self.budget(), "original": original.key, "retrain": retrain.key,
                 "options": {"relearn_attack": False, "representation_probe": False}},
                [original.key, retrain.key],
            )
            keys.append(run.key)
        group_key = sha256_json({"tune_group": sorted(keys)})
        group = TuneGroup(group_key, base["task"], base["corpus"], base["model"], split["scenario"], method,
                          tuple(keys), points)
        self.tune_groups[group_key] = group
        return group


def build_plan(config: BenchConfig, check_names: bool = True) -> Plan:
    """Every run of `config`'s grid, dependencies first. Validates model and method names.

    The plan is built even when a data path is missing (such runs show a placeholder corpus and
    `plan.notes` says what is required); `check_names=False` skips the registry look-ups.
    """
    methods = resolve_methods(config) if check_names else tuple(m for m in config.methods if not m.startswith("all"))
    if check_names:
        check_models(config)
        check_method_overrides(config, methods)
    builder = _PlanBuilder(config, methods, check_names)
    for task in config.tasks:
        builder.build_task(task)
    order = {stage: index for index, stage in enumerate(STAGES)}
    runs = sorted(builder.runs.values(), key=lambda run: order[run.stage])  # stable: keeps grid order
    return Plan(config, runs, notes=config.missing_data(), tune_groups=builder.tune_groups, methods=methods)
