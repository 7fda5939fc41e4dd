"""Score a method's hyper-parameters on a finished grid, with the validation split as Dtest.

    .venv/bin/python benchmarks/validation_study.py RUN_DIR METHOD '[{}, {"lr": 3e-4}]' \
        [--only "kws kws-resnet seed=0"] [--cache-dir DIR] [--cap-seconds 10]

For every Retrain cell of the grid (filtered by --only, a substring of the Retrain run's label)
and every override set, it unlearns the cell's Original with METHOD and prints the Avg. Gap to
the cell's Retrain, where the validation split stands in for Dtest (the benchmark's `--tune`
criterion). Test data never enters, so the choice it informs is a fair one. It reuses the
grid's models and writes nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from grid_cells import describe_gap, grid_cells
from speech_unlearning.evaluation import evaluate_unlearning
from speech_unlearning.experiments.plan import load_methods
from speech_unlearning.experiments.stages import TUNE_METRICS, ValidationAsTest
from speech_unlearning.methods import unlearn
from speech_unlearning.training.loop import TrainConfig


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished `speech-unlearn bench` run folder")
    parser.add_argument("method", help="registered method name, e.g. calibrated or scrub+superloss")
    parser.add_argument("overrides", type=json.loads, help="JSON list of override mappings, e.g. '[{}, {\"lr\": 3e-4}]'")
    parser.add_argument("--only", action="append", default=[], help="keep cells whose label contains this (repeatable)")
    parser.add_argument("--cache-dir", default=None, help="the grid's corpus / feature cache")
    parser.add_argument("--cap-seconds", type=float, default=10.0, help="unlearning budget cap (the quick preset's)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    load_methods()
    for cell in grid_cells(args.run_dir, args.cache_dir, args.only):
        split = ValidationAsTest(cell.split)
        print(f"== {cell.label} (Retrain {cell.retrain_seconds:.1f} s)", flush=True)
        for overrides in args.overrides:
            result = unlearn(args.method, cell.original, cell.data(cell.split.forget_indices(cell.corpus)),
                             cell.data(cell.split.retain_indices(cell.corpus)), overrides=overrides,
                             budget_seconds=min(cell.retrain_seconds, args.cap_seconds), seed=int(cell.config["seed"]),
                             validation=cell.data(cell.split.validation_indices(cell.corpus)),
                             train_config=TrainConfig(**cell.original_metadata["train_config"]))
            report = evaluate_unlearning(result.model, cell.features, cell.corpus, split, reference=cell.retrain,
                                         metrics=list(TUNE_METRICS), seed=int(cell.config["seed"]), progress=False)
            print(f"  {json.dumps(overrides):40s} {describe_gap(report['gap_to_retrain'])}; {result.seconds:.1f} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
