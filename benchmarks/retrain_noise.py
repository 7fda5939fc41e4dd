"""The noise floor of the Avg. Gap: two Retrains of the same split that differ only in seed.

    .venv/bin/python benchmarks/retrain_noise.py RUN_DIR [--only "seed=0 sample 5%"] [--cache-dir DIR]

For every Retrain cell of a finished grid (filtered by --only), it trains a second Retrain on
the same Dr with the grid Retrain's own recipe (its epochs, step-matched where the grid ran with
retrain_match=steps) and seed + 1000, and prints that model's Avg. Gap to the grid's
Retrain, measured exactly as the grid measures a method. No unlearning method can be expected
to come closer to "the" Retrain than another Retrain does. It ends with one line per setting
(task, scenario): the mean ± std of the per-run gaps, and the gap of the means (each metric
averaged over the setting's cells first, as the report's last column does).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch

from grid_cells import describe_gap, grid_cells, mean_std
from speech_unlearning.evaluation import evaluate_unlearning, gap_of_means
from speech_unlearning.experiments.stages import TUNE_METRICS
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.recipes import train_original

SEED_OFFSET = 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished `speech-unlearn bench` run folder")
    parser.add_argument("--only", action="append", default=[], help="keep cells whose label contains this (repeatable)")
    parser.add_argument("--cache-dir", default=None, help="the grid's corpus / feature cache")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for cell in grid_cells(args.run_dir, args.cache_dir, args.only):
        recipe = TrainConfig(**cell.retrain_metadata["train_config"])
        seed = int(cell.config["seed"])
        other, _, _ = train_original(cell.corpus, cell.config["model"], seed + SEED_OFFSET, args.cache_dir, recipe,
                                     cell.split.retain_indices(cell.corpus), progress=False,
                                     model_options=cell.config.get("model_options"))
        report = evaluate_unlearning(other.eval(), cell.features, cell.corpus, cell.split, reference=cell.retrain,
                                     metrics=list(TUNE_METRICS), seed=seed, progress=False)
        print(f"{cell.label}: {describe_gap(report['gap_to_retrain'])}", flush=True)
        settings[cell.config["task"], cell.config["split"]["scenario"]].append(report)
    for (task, scenario), reports in sorted(settings.items()):
        per_run = [report["gap_to_retrain"]["avg_gap_pp"] for report in reports]
        pooled = gap_of_means([(report["models"]["unlearned"], report["models"]["retrained"]) for report in reports])
        print(f"{task} {scenario}: per-run Avg. Gap {mean_std(per_run)} pp, "
              f"gap of the means {pooled['avg_gap_pp']:.2f} pp over {len(reports)} cells")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
