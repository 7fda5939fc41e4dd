"""`speech-unlearn bench`: plan, run and report an unlearning benchmark grid.

    speech-unlearn bench --preset demo|quick|fsdd|paper|PATH.yaml [--set key=value ...]
        [--run-dir DIR] [--executor local|ray] [--workers N] [--ray-address ADDR]
        [--cpus-per-run C] [--gpus-per-run G] [--plan-only] [--tune] [--retry-failed] [--cache-dir DIR]

The plan (runs per stage, what is already done, a time estimate) is printed before anything
runs; every configuration error is reported before any compute. Results go to
RUN_DIR/runs.sqlite, artefacts under RUN_DIR/<stage>/, and the report to RUN_DIR/report/.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..config import ConfigError, parse_overrides


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run an unlearning benchmark grid (plan, run, resume, report)",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="demo",
                        help="named preset (demo, quick, fsdd, paper) or a PATH.yaml (keys of the config, optional "
                             "'base: NAME'); default: demo")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set seeds=0,1 --set ratios=0.05 "
                             "--set method_overrides.scrub.lr=1e-4 (repeatable; see --list-keys)")
    parser.add_argument("--list-keys", action="store_true", help="list every config key with its default and exit")
    parser.add_argument("--run-dir", type=Path, default=None, help="run folder (default: runs/<preset name>)")
    parser.add_argument("--executor", choices=("local", "ray"), default=None,
                        help="where runs execute (default: the preset's, normally local)")
    parser.add_argument("--workers", type=int, default=None,
                        help="local executor: worker processes (1 = in-process, the default)")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster address (e.g. auto or HOST:PORT); default: start a local Ray instance")
    parser.add_argument("--cpus-per-run", type=float, default=None, help="CPUs reserved per run (ray executor)")
    parser.add_argument("--gpus-per-run", type=float, default=None, help="GPUs reserved per run (ray executor)")
    parser.add_argument("--device", default=None, help="torch device for every run: auto, cpu, cuda, cuda:N")
    parser.add_argument("--plan-only", action="store_true", help="print the plan and stop")
    parser.add_argument("--tune", action="store_true",
                        help="select each method's lr x epochs on a validation forget split before the grid")
    parser.add_argument("--retry-failed", action="store_true", help="run failed runs again (default: skip them)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="corpora / features cache (default: $SPEECH_UNLEARNING_CACHE or ~/.cache/speech_unlearning)")
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    parser.set_defaults(handler=run)


def _cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config keys given as dedicated flags; they win over --set and the preset."""
    values = parse_overrides(args.overrides)
    flags = {"executor": args.executor, "workers": args.workers, "cpus_per_run": args.cpus_per_run,
             "gpus_per_run": args.gpus_per_run, "device": args.device}
    values.update({key: value for key, value in flags.items() if value is not None})
    if args.tune:
        values["tune"] = True
    return values


def _list_keys() -> int:
    from ..config import describe_fields
    from ..experiments.presets import BenchConfig

    for name, type_name, default, help_text in describe_fields(BenchConfig):
        print(f"{name:<22} {type_name:<18} default {default!r}\n{'':<22} {help_text}")
    return 0


def _parallelism(config) -> int:
    if config.executor == "ray":
        return max(1, int((os.cpu_count() or 1) / config.cpus_per_run))
    return config.workers


def _threads_per_run(config) -> int | None:
    """CPU threads each run may use: the reserved CPUs (ray) or a fair share of this machine."""
    if config.executor == "ray":
        return max(1, int(config.cpus_per_run))
    if config.workers > 1:
        return max(1, (os.cpu_count() or 1) // config.workers)
    return None


def run(args: argparse.Namespace) -> int:
    from ..experiments.costs import describe_plan, estimate_plan
    from ..experiments.plan import build_plan
    from ..experiments.presets import config_to_dict, resolve_config
    from ..experiments.store import DB_NAME, ResultStore

    if args.list_keys:
        return _list_keys()
    config = resolve_config(args.preset, _cli_overrides(args))
    plan = build_plan(config)
    run_dir = (args.run_dir or Path("runs") / config.name).expanduser()
    finished: dict[str, dict] = {}
    statuses: dict[str, str] = {}
    if (run_dir / DB_NAME).is_file():
        with ResultStore.in_folder(run_dir) as store:
            statuses = store.statuses()
            skip = ("done",) if args.retry_failed else ("done", "failed")
            finished = {r.key: {"config": r.config, "seconds": r.seconds} for r in store.records() if r.status in skip}
    print(describe_plan(plan, estimate_plan(plan, finished), statuses, str(run_dir), _parallelism(config)))
    if args.plan_only:
        return 0
    if not plan.runnable:
        raise ConfigError("cannot run: " + "; ".join(plan.notes))
    return _run_plan(plan, config, run_dir, args, config_to_dict(config))


def _run_plan(plan, config, run_dir: Path, args: argparse.Namespace, config_dict: dict) -> int:
    from ..experiments.executors import make_executor
    from ..experiments.report import format_terminal, write_report_files
    from ..experiments.runner import run_grid
    from ..experiments.store import ResultStore
    from ..io import atomic_write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "bench.json", config_dict)
    with ResultStore.in_folder(run_dir) as store:
        store.set_meta("config", config_dict)
    executor = make_executor(config.executor, workers=config.workers, address=args.ray_address,
                             cpus_per_run=config.cpus_per_run, gpus_per_run=config.gpus_per_run)
    extra = {"device": config.device, "threads": _threads_per_run(config)}
    summary = run_grid(plan, run_dir, executor, retry_failed=args.retry_failed, cache_dir=args.cache_dir, extra=extra)
    print(f"\nran {len(summary.executed)} run(s), skipped {summary.skipped} finished, "
          f"{len(summary.failed)} failed" + (f", {len(summary.recovered)} interrupted run(s) redone" if summary.recovered else ""))
    for key in summary.failed[:10]:
        record_error = _first_error_line(run_dir, key)
        print(f"  failed {plan.by_key[key].label}: {record_error}", file=sys.stderr)
    if not args.no_report:
        paths = write_report_files(run_dir)
        print("\n" + format_terminal(run_dir))
        print(f"report: {paths['markdown']}\n        {paths['html']}\n        {paths['csv']}")
    return 1 if summary.failed else 0


def _first_error_line(run_dir: Path, key: str) -> str:
    from ..experiments.store import ResultStore

    with ResultStore.in_folder(run_dir) as store:
        record = store.get(key)
    return (record.error or "").splitlines()[0] if record and record.error else "?"

