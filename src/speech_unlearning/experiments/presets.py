"""Benchmark configurations: one typed dataclass, named presets, YAML files, `--set` overrides.

`BenchConfig` describes a whole experiment grid (tasks, corpora, backbones, unlearning scenarios,
forget ratios, seeds, methods) and how to run it (executor, resources). The same object drives
the command line, YAML presets and the tests. Every value is checked in `__post_init__`, so a
bad key or value is reported by name before any compute is spent.

Named presets (`PRESETS`): `demo`, `quick`, `fsdd`, `paper`. `resolve_config` turns a preset
name or a YAML path plus `--set key=value` pairs into a validated `BenchConfig`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from ..config import ConfigError, from_mapping, require
from ..registry import Registry

TASKS = ("kws", "sid")
SCENARIOS = ("sample", "class", "speaker")
DATA_SOURCES = ("embedded", "fsdd", "speech-commands", "superb")

# The seven backbones the paper averages over (Section 5.2).
PAPER_BACKBONES = (
    "whisper-tiny",
    "whisper-base",
    "wav2vec2-base",
    "wav2vec2-large",
    "hubert-base",
    "hubert-large",
    "hubert-xlarge",
)

# Method names that are stages of the grid, not unlearning methods: the benchmark trains the
# Retrain reference itself, and "original" is the model before unlearning.
REFERENCE_NAMES = ("original", "retrain")
# Most Retrains / unlearned models per split: replica seeds are offset by REPLICA_SEED_OFFSET
# (experiments/plan.py), so this keeps every replica seed of one split distinct.
MAX_REPLICAS = 99
# Mapping fields set from the command line with dotted keys: FIELD.NAME.KEY=VALUE.
NESTED_FIELDS = ("method_overrides", "model_options", "task_train")
TASK_TRAIN_KEYS = ("epochs", "max_train_seconds")


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


def _task_train_values(task: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """One task_train entry checked and as numbers: epochs a whole number, max_train_seconds a float."""
    require(task in TASKS, "task_train", f"{task!r} is not one of {list(TASKS)}")
    checked = {}
    for key, value in values.items():
        require(key in TASK_TRAIN_KEYS, f"task_train.{task}", f"{key!r} is not one of {list(TASK_TRAIN_KEYS)}")
        try:
            number = int(str(value)) if key == "epochs" else float(value)
        except ValueError:
            number = 0
        require(number > 0, f"task_train.{task}.{key}", f"{value!r} is not a {'whole ' if key == 'epochs' else ''}number > 0")
        checked[key] = number
    return checked


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark grid. Tuples are the axes of the grid; their product is the set of runs."""

    name: str = _help("name of the grid (the default run folder is runs/<name>)", default="custom")
    tasks: tuple[str, ...] = _help("tasks to run: kws, sid", default=TASKS)
    data: Literal["embedded", "fsdd", "speech-commands", "superb"] = _help(
        "corpora: embedded (synthetic, built on first use), fsdd (real digits), speech-commands (real "
        "Speech Commands clips for both tasks: keywords, and the speakers with 20+ clips), "
        "superb (Speech Commands for kws, VoxCeleb1 for sid, from local paths)",
        default="embedded",
    )
    fsdd: str | None = _help("FSDD folder (default: $SPEECH_UNLEARNING_FSDD or ../shared/data/fsdd)", default=None)
    speech_commands: str | None = _help(
        "Speech Commands folder (data=superb or speech-commands; default for speech-commands: "
        "$SPEECH_UNLEARNING_SPEECH_COMMANDS or ../shared/data/speech-commands-mini)",
        default=None,
    )
    voxceleb1: str | None = _help("VoxCeleb1 folder with iden_split.txt (data=superb)", default=None)
    kws_models: tuple[str, ...] = _help("backbones for keyword spotting", default=("kws-resnet",))
    sid_models: tuple[str, ...] = _help("backbones for speaker identification", default=("sid-xvector",))
    model_dir: str | None = _help(
        "folder holding one sub-folder of pretrained weights per backbone name (transformers); "
        "unset: the model's default source",
        default=None,
    )
    model_options: dict = _help(
        "per-backbone options for create_model, e.g. {kws-resnet: {channels: 16}} "
        "(CLI: --set model_options.kws-resnet.channels=16)",
        default_factory=dict,
    )
    scenarios: tuple[str, ...] = _help(
        "unlearning scenarios: sample, class, speaker (speaker applies to kws only)", default=("sample", "class")
    )
    ratios: tuple[float, ...] = _help("forget ratios for sample unlearning, each in (0, 0.5]", default=(0.05,))
    seeds: tuple[int, ...] = _help("seeds (original model, split, unlearning)", default=(0,))
    retrain_seeds: int = _help(
        "Retrains per forget split (K): same Dr, other initialisation and order seeds, never the Original's; "
        "K >= 2 adds the Retrain spread and the indistinguishability test, K >= 3 (with unlearn_seeds >= 3) "
        "the forgetting score, U-LiRA and the informed attack; 1 = a single Retrain (still with its own seed)",
        default=1,
    )
    unlearn_seeds: int = _help("unlearned models per method and forget split (K), each with its own seed", default=1)
    methods: tuple[str, ...] = _help("unlearning methods, or 'all' for every registered method", default=("all",))
    class_count: int = _help("classes forgotten in each class-unlearning run", default=1)
    speaker_count: int = _help("speakers forgotten in each speaker-unlearning run", default=1)
    recipe: Literal["converged", "early-stop"] = _help(
        "training recipe of Original and Retrain: converged (a fixed schedule that fits the training data, "
        "as deployed models are trained) or early-stop (shorter; stops once validation stalls)",
        default="converged",
    )
    epochs: int | None = _help("epochs for Original and Retrain (unset: the recipe's default)", default=None)
    max_train_seconds: float | None = _help("wall-time cap for each Original / Retrain training", default=None)
    task_train: dict = _help(
        "per-task epochs / max_train_seconds over the two above, e.g. {kws: {epochs: 24}} "
        "(CLI: --set task_train.kws.epochs=24)",
        default_factory=dict,
    )
    retrain_match: Literal["epochs", "steps"] = _help(
        "how long the Retrain trains: epochs = the Original's epochs on Dr (the paper's; fewer optimiser steps), "
        "steps = as many optimiser steps as the Original took (whole epochs)",
        default="epochs",
    )
    budget_factor: float = _help("unlearning time budget as a multiple of the Retrain wall time", default=1.0)
    unlearn_cap_seconds: float | None = _help("absolute cap on each unlearning run's time budget", default=None)
    unlearn_cap_steps: int | None = _help(
        "cap each unlearning run at this many optimiser steps instead of a time budget (budget_factor and "
        "unlearn_cap_seconds then do not apply): a capped method stops at the same step under any load, so two "
        "grids with the same threads per run give the same numbers; times are still measured",
        default=None,
    )
    method_overrides: dict = _help(
        "per-method hyper-parameters, e.g. {scrub: {lr: 1e-4}} (CLI: --set method_overrides.scrub.lr=1e-4)",
        default_factory=dict,
    )
    relearn_attack: bool = _help("run the relearning attack in every evaluation", default=True)
    representation_probe: bool = _help("run the representation probe in every evaluation", default=True)
    tune: bool = _help("select each method's lr x epochs on a validation forget split first", default=False)
    tune_lr_scales: tuple[float, ...] = _help("tuning grid: multiples of the method's default lr", default=(0.3, 1.0, 3.0))
    tune_epoch_scales: tuple[float, ...] = _help(
        "tuning grid: multiples of the method's default epochs", default=(0.5, 1.0)
    )
    tune_ratio: float | None = _help("forget ratio of the validation forget split (unset: the median ratio)", default=None)
    device: str = _help("torch device for every run: auto, cpu, cuda, cuda:N", default="auto")
    executor: Literal["local", "ray"] = _help("where runs execute: local or ray", default="local")
    workers: int = _help("local executor: parallel worker processes (1 = in-process)", default=1)
    cpus_per_run: float = _help("CPUs reserved per run (ray executor)", default=1.0)
    gpus_per_run: float = _help("GPUs reserved per run (ray executor)", default=0.0)

    def __post_init__(self) -> None:
        require(bool(self.name.strip()), "name", "must not be empty")
        self._check_axis("tasks", self.tasks, TASKS)
        self._check_axis("scenarios", self.scenarios, SCENARIOS)
        require(self.data in DATA_SOURCES, "data", f"{self.data!r} is not one of {list(DATA_SOURCES)}")
        for task in self.tasks:
            models = self.models_for(task)
            require(len(models) > 0, f"{task}_models", "must name at least one backbone")
            require(len(set(models)) == len(models), f"{task}_models", "has duplicates")
        require(len(self.ratios) > 0, "ratios", "must not be empty")
        for ratio in self.ratios:
            require(0 < ratio <= 0.5, "ratios", f"{ratio} is outside (0, 0.5]")
        require(len(set(self.ratios)) == len(self.ratios), "ratios", "has duplicates")
        require(len(self.seeds) > 0, "seeds", "must not be empty")
        require(all(seed >= 0 for seed in self.seeds), "seeds", "must be >= 0")
        require(len(set(self.seeds)) == len(self.seeds), "seeds", "has duplicates")
        require(1 <= self.retrain_seeds <= MAX_REPLICAS, "retrain_seeds", f"must be in [1, {MAX_REPLICAS}]")
        require(1 <= self.unlearn_seeds <= MAX_REPLICAS, "unlearn_seeds", f"must be in [1, {MAX_REPLICAS}]")
        require(len(self.methods) > 0, "methods", "must not be empty")
        require(len(set(self.methods)) == len(self.methods), "methods", "has duplicates")
        for name in self.methods:
            require(name not in REFERENCE_NAMES, "methods", f"{name!r} is a reference the grid always runs; drop it")
        require(self.class_count >= 1, "class_count", "must be >= 1")
        require(self.speaker_count >= 1, "speaker_count", "must be >= 1")
        require(self.epochs is None or self.epochs >= 1, "epochs", "must be >= 1")
        require(self.max_train_seconds is None or self.max_train_seconds > 0, "max_train_seconds", "must be > 0")
        require(self.budget_factor > 0, "budget_factor", "must be > 0")
        require(self.unlearn_cap_seconds is None or self.unlearn_cap_seconds > 0, "unlearn_cap_seconds", "must be > 0")
        require(self.unlearn_cap_steps is None or self.unlearn_cap_steps >= 1, "unlearn_cap_steps", "must be >= 1")
        for field_name in NESTED_FIELDS:
            nested = getattr(self, field_name)
            require(isinstance(nested, dict), field_name, "must be a mapping NAME -> {key: value}")
            for name, values in nested.items():
                require(isinstance(values, dict), f"{field_name}.{name}", "must be a mapping key -> value")
        # Values from the command line arrive as text: store them as numbers.
        as_numbers = {task: _task_train_values(task, values) for task, values in self.task_train.items()}
        object.__setattr__(self, "task_train", as_numbers)
        require(len(self.tune_lr_scales) > 0 and all(s > 0 for s in self.tune_lr_scales), "tune_lr_scales", "must be > 0")
        require(
            len(self.tune_epoch_scales) > 0 and all(s > 0 for s in self.tune_epoch_scales), "tune_epoch_scales", "must be > 0"
        )
        require(self.tune_ratio is None or 0 < self.tune_ratio <= 0.5, "tune_ratio", "must be in (0, 0.5]")
        require(self.workers >= 1, "workers", "must be >= 1")
        require(self.cpus_per_run > 0, "cpus_per_run", "must be > 0")
        require(self.gpus_per_run >= 0, "gpus_per_run", "must be >= 0")

    @staticmethod
    def _check_axis(name: str, values: tuple[str, ...], valid: tuple[str, ...]) -> None:
        require(len(values) > 0, name, "must not be empty")
        for value in values:
            require(value in valid, name, f"{value!r} is not one of {list(valid)}")
        require(len(set(values)) == len(values), name, "has duplicates")

    def train_setting(self, task: str, key: str) -> Any:
        """`epochs` or `max_train_seconds` for `task`: its task_train entry, else the grid-wide value."""
        return self.task_train.get(task, {}).get(key, getattr(self, key))

    def models_for(self, task: str) -> tuple[str, ...]:
        """The backbones run for `task`."""
        return self.kws_models if task == "kws" else self.sid_models

    def scenarios_for(self, task: str) -> tuple[str, ...]:
        """Scenarios that apply to `task`: speaker unlearning is a KWS scenario (in SID it is class unlearning)."""
        return tuple(s for s in self.scenarios if not (s == "speaker" and task == "sid"))

    def corpus_spec(self, task: str) -> str:
        """The corpus spec (for `load_corpus`) used for `task`; raises ConfigError if a path is missing."""
        path = self.data_path(task)
        if self.data == "embedded":
            return "embedded"
        if path is None:
            key = self.data_key(task)
            raise ConfigError(f"{key}: the data path is required to run data={self.data} (--set {key}=PATH)")
        loader = {"kws": "speech-commands", "sid": "voxceleb1"}
        name = self.data if self.data in ("fsdd", "speech-commands") else loader[task]
        return f"{name}:{Path(path).expanduser().resolve()}"

    def data_key(self, task: str) -> str:
        """The config key that holds the data path for `task` ("" for the embedded corpus)."""
        if self.data == "embedded":
            return ""
        if self.data == "fsdd":
            return "fsdd"
        return "speech_commands" if task == "kws" or self.data == "speech-commands" else "voxceleb1"

    def data_path(self, task: str) -> str | None:
        """The configured data path for `task`, with FSDD's conventional default; None if unset."""
        key = self.data_key(task)
        if not key:
            return None
        value = getattr(self, key)
        if value is None and key == "fsdd":
            return os.environ.get("SPEECH_UNLEARNING_FSDD", str(Path("..") / "shared" / "data" / "fsdd"))
        if value is None and self.data == "speech-commands":
            from ..data.speech_commands import default_speech_commands_root

            found = default_speech_commands_root()
            return str(found) if found is not None else None
        return value

    def missing_data(self) -> list[str]:
        """Human-readable notes for data paths that are unset or absent (empty when the grid can run)."""
        notes = []
        for task in self.tasks:
            key = self.data_key(task)
            if not key:
                continue
            path = self.data_path(task)
            if path is None:
                notes.append(f"{task}: the data path is required to run (--set {key}=PATH)")
            elif not Path(path).expanduser().is_dir():
                notes.append(f"{task}: {key} folder {path} does not exist (--set {key}=PATH)")
        return notes


BenchFactory = Callable[[], BenchConfig]
PRESETS: Registry[BenchFactory] = Registry("preset")


# Narrower versions of the two small CPU models: about 8x (KWS) and 4x (SID) cheaper per step than
# the defaults, and they still reach about 84 % (KWS) and 91 % (SID) test accuracy on the embedded
# corpus in 8 epochs, which lets the demo train its six models in a few minutes.
DEMO_MODEL_OPTIONS = {
    "kws-resnet": {"channels": 16},
    "sid-xvector": {"channels": 128, "stats_channels": 256, "embedding_dim": 128},
}


# Real-speech grids: the temporal CNN for keywords (it fits its training data, 98-99 %, in 18
# epochs at about a sixth of kws-resnet's cost at 32 channels, so Retrain ensembles stay
# affordable) and the demo's narrow x-vector, which fits the 42 speakers (100 % train accuracy).
REAL_KWS_MODELS = ("kws-tcresnet",)
REAL_MODEL_OPTIONS = {
    "sid-xvector": {"channels": 128, "stats_channels": 256, "embedding_dim": 128},
}
# The demo's real half keeps to the requests real speakers make (a few recordings, a speaker) to
# stay within the demo's ten minutes; the real preset has every scenario.
DEMO_REAL_SCENARIOS = ("sample", "speaker")


@PRESETS.register("demo")
def demo_preset() -> BenchConfig:
    """The README's main job: both tasks on the embedded corpus, every method, one ratio, one seed.

    Trimmed to fit about ten minutes on two CPU cores: narrower small models (DEMO_MODEL_OPTIONS),
    Original and Retrain trained for 8 epochs (at most 90 s each), every unlearning run capped
    at 3 s whatever the Retrain time, one forgotten class, and two single-threaded worker
    processes to keep both cores busy.
    """
    return BenchConfig(
        name="demo",
        model_options={name: dict(options) for name, options in DEMO_MODEL_OPTIONS.items()},
        scenarios=("sample", "class"),
        ratios=(0.05,),
        seeds=(0,),
        epochs=8,
        max_train_seconds=90.0,
        unlearn_cap_seconds=3.0,
        relearn_attack=True,
        representation_probe=True,
        workers=2,
    )


@PRESETS.register("quick")
def quick_preset() -> BenchConfig:
    """Like demo with ratios 1 %, 5 %, 10 %, two seeds and speaker unlearning in KWS; longer
    training (10 epochs, at most 2 min) and a 10 s unlearning cap."""
    return dataclasses.replace(
        demo_preset(), name="quick", scenarios=("sample", "class", "speaker"), ratios=(0.01, 0.05, 0.10), seeds=(0, 1),
        epochs=10, max_train_seconds=120.0, unlearn_cap_seconds=10.0,
    )


@PRESETS.register("fsdd")
def fsdd_preset() -> BenchConfig:
    """The quick protocol on FSDD, real human speech (set the folder with --set fsdd=PATH)."""
    return dataclasses.replace(quick_preset(), name="fsdd", data="fsdd")


@PRESETS.register("real")
def real_preset() -> BenchConfig:
    """The quick protocol on real speech: Speech Commands clips for both tasks (the keywords, and
    the speakers with 20 or more clips), every scenario, Originals trained to fit their data.

    The folder is `--set speech_commands=PATH`, else $SPEECH_UNLEARNING_SPEECH_COMMANDS, else the
    mini corpus beside the project (../shared/data/speech-commands-mini). One forget ratio (5 %),
    five seeds; the temporal CNN for keywords (REAL_KWS_MODELS) and the narrow x-vector
    (REAL_MODEL_OPTIONS), both with the converged recipe. Every method
    with an lr or epochs setting is tuned the same way first (`tune`: the same lr x epochs grid on
    a validation forget split of the first seed, which the reported cells never use), so that no
    method is compared tuned against others at their defaults.
    """
    return dataclasses.replace(
        quick_preset(), name="real", data="speech-commands",
        kws_models=REAL_KWS_MODELS, model_options={name: dict(options) for name, options in REAL_MODEL_OPTIONS.items()},
        ratios=(0.05,), seeds=(0, 1, 2, 3, 4), epochs=None, max_train_seconds=None, tune=True,
    )  # fmt: skip


@PRESETS.register("demo-real")
def demo_real_preset() -> BenchConfig:
    """The demo's real-speech half (scripts/demo.sh runs it when a Speech Commands folder is
    found): the real preset's models and Originals at one seed, sample and speaker requests,
    3 s unlearning runs and every method at its defaults (no tuning), to stay within the demo's
    ten minutes."""
    return dataclasses.replace(
        real_preset(), name="demo-real", seeds=(0,), scenarios=DEMO_REAL_SCENARIOS, unlearn_cap_seconds=3.0, tune=False,
    )  # fmt: skip


@PRESETS.register("paper")
def paper_preset() -> BenchConfig:
    """The paper's protocol: Speech Commands + VoxCeleb1, seven transformer backbones,
    forget ratios 1-10 % in 1 % steps, five seeds, sample and class unlearning. Meant for GPUs."""
    return BenchConfig(
        name="paper",
        data="superb",
        kws_models=PAPER_BACKBONES,
        sid_models=PAPER_BACKBONES,
        scenarios=("sample", "class"),
        ratios=tuple(round(percent / 100, 2) for percent in range(1, 11)),
        seeds=(0, 1, 2, 3, 4),
        gpus_per_run=1.0,
        cpus_per_run=4.0,
    )


def _merge_overrides(base: dict[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Apply `overrides` to `base`; a dotted key (`method_overrides.scrub.lr`) sets a nested value.

    A nested mapping given whole (e.g. from YAML) is merged name by name into the base's.
    """
    merged = dict(base)
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head in NESTED_FIELDS and isinstance(value, Mapping) and not rest:
            nested = {name: dict(values) for name, values in merged.get(head, {}).items()}
            for name, values in value.items():
                if not isinstance(values, Mapping):
                    raise ConfigError(f"{where}: {head}.{name}: must be a mapping key -> value, got {values!r}")
                nested[name] = {**nested.get(name, {}), **values}
            merged[head] = nested
            continue
        if not rest:
            merged[key] = value
            continue
        if head not in NESTED_FIELDS:
            raise ConfigError(f"{where}: {key!r}: only {', '.join(NESTED_FIELDS)} take dotted keys (FIELD.NAME.KEY)")
        name, _, option = rest.partition(".")
        if not name or not option:
            raise ConfigError(f"{where}: {key!r}: expected {head}.NAME.KEY")
        nested = {entry: dict(values) for entry, values in merged.get(head, {}).items()}
        nested.setdefault(name, {})[option] = value
        merged[head] = nested
    return merged


def _load_yaml(path: Path) -> tuple[dict[str, Any], str]:
    """The mapping of a YAML preset and its base preset name ("base:" key, default "demo")."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"preset file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"preset file {path} is not valid YAML: {error}") from None
    loaded = loaded or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"preset file {path}: expected a mapping of config keys, got {type(loaded).__name__}")
    base = str(loaded.pop("base", "demo"))
    loaded.setdefault("name", path.stem)
    return loaded, base


def resolve_config(preset: str, overrides: Mapping[str, Any] | None = None) -> BenchConfig:
    """A validated BenchConfig from a preset name or a YAML path, then `overrides` (`--set` pairs).

    A YAML preset holds config keys and optionally `base: NAME` (a named preset it starts from,
    default demo). Raises ConfigError naming the unknown preset, key or bad value.
    """
    file_values: dict[str, Any] = {}
    where = f"preset {preset}"
    if preset.endswith((".yaml", ".yml")) or os.sep in preset:
        file_values, base_name = _load_yaml(Path(preset))
    else:
        base_name = preset
    if base_name not in PRESETS:
        raise ConfigError(f"unknown preset {base_name!r}; valid presets: {', '.join(PRESETS.names())} or a PATH.yaml")
    base = dataclasses.asdict(PRESETS.get(base_name)())
    values = _merge_overrides(base, file_values, where)
    values = _merge_overrides(values, dict(overrides or {}), "--set")
    return from_mapping(BenchConfig, values, where=where)


def config_to_dict(config: BenchConfig) -> dict[str, Any]:
    """A JSON-friendly dict of the config (tuples become lists)."""
    return dataclasses.asdict(config)
