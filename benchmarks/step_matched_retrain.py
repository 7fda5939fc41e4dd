"""Is the Original far from the Retrain because of the forgotten data, or because the Retrain took fewer steps?

    .venv/bin/python benchmarks/step_matched_retrain.py RUN_DIR [RUN_DIR ...] [--only "sample 10%"] [--cache-dir DIR]

The benchmark's Retrain runs the Original's recipe on Dr for the same number of epochs, so it
takes fewer optimiser steps: 10 % fewer at a 10 % forget ratio. Where the recipe stops short of
convergence (the small models of the quick and fsdd presets are still improving at their last
epoch), fewer steps alone make a weaker model on every split, Dr included, and a forgetting
method would have to damage the model to match it.

For every Retrain cell of the grids (filtered by --only), this trains a step-matched Retrain: the
same recipe, Dr and seed, with the epoch count that gives it as many optimiser steps as the
Original took (rounded to whole epochs). "Retrain" below is the standard one, for the Original's
epochs. Whichever of the two the grid trained (same epochs, data and seed) is reused, so a grid
run with retrain_match=steps gets its standard Retrain trained here. It prints the Original's
Avg. Gap to the standard Retrain and to the step-matched one, and the gap between the two
Retrains, each measured exactly as the grid measures a method. It ends with one line per
setting, and per forget ratio or size within it, and comparison: the per-run mean ± std, the gap
of the means and the means of its four terms. It writes nothing.

A new grid can take the step-matched Retrain as its reference outright (`speech-unlearn bench
--set retrain_match=steps`); this script compares both references on grids already run.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict
from pathlib import Path

import torch

from grid_cells import describe_gap, grid_cells, mean_std
from speech_unlearning.evaluation import evaluate_unlearning, gap_to_retrain
from speech_unlearning.evaluation.gap import flatten, mean_table
from speech_unlearning.experiments.stages import TUNE_METRICS
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.recipes import train_original
from speech_unlearning.training.trainer import step_matched_epochs

COMPARISONS = {
    "original_vs_retrain": "Original vs Retrain",
    "original_vs_matched": "Original vs step-matched Retrain",
    "matched_vs_retrain": "step-matched Retrain vs Retrain",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="finished `speech-unlearn bench` run folders (their cells are pooled)")
    parser.add_argument("--only", action="append", default=[], help="keep cells whose label contains this (repeatable)")
    parser.add_argument("--cache-dir", default=None, help="the grids' corpus / feature cache")
    args = parser.parse_args()
    torch.set_num_threads(1)
    reports: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run_dir in args.run_dirs:
        for cell in grid_cells(run_dir, args.cache_dir, args.only):
            recipe = TrainConfig(**cell.original_metadata["train_config"])
            retained = cell.split.retain_indices(cell.corpus)
            trained = len(cell.corpus.indices("train"))
            epochs = step_matched_epochs(recipe.epochs, trained, len(retained), recipe.batch_size)
            grid_epochs = cell.retrain_metadata["train_config"]["epochs"]
            standard, matched = (cell.retrain if count == grid_epochs else retrain(cell, recipe, count, retained, args)
                                 for count in (recipe.epochs, epochs))
            pairs = {"original_vs_retrain": (cell.original, standard),
                     "original_vs_matched": (cell.original, matched),
                     "matched_vs_retrain": (matched, standard)}
            task, seed = cell.config["task"], int(cell.config["seed"])
            groups = [f"{task} {cell.config['split']['scenario']}", f"{task} {cell.label.split(f'seed={seed} ')[-1]}"]
            print(f"{cell.label} ({recipe.epochs} -> {epochs} epochs):", flush=True)
            for name, (model, reference) in pairs.items():
                report = evaluate_unlearning(model, cell.features, cell.corpus, cell.split, reference=reference,
                                             metrics=list(TUNE_METRICS), seed=seed, progress=False)
                for group in dict.fromkeys(groups):  # the setting, and its forget ratio or size
                    reports[group, name].append(report)
                print(f"  {COMPARISONS[name]:34} {describe_gap(report['gap_to_retrain'])}", flush=True)
    for (group, name), rows in sorted(reports.items()):
        per_run = [report["gap_to_retrain"]["avg_gap_pp"] for report in rows]
        print(f"{group}, {COMPARISONS[name]}: per-run Avg. Gap {mean_std(per_run)} pp over {len(rows)} cells; "
              f"{describe_means(rows)}")
    return 0


def retrain(cell, recipe: TrainConfig, epochs: int, retained, args: argparse.Namespace):
    """A Retrain of the cell's Dr and seed with the Original's recipe for `epochs` epochs, in eval mode."""
    model, _, _ = train_original(cell.corpus, cell.config["model"], int(cell.config["seed"]), args.cache_dir,
                                 dataclasses.replace(recipe, epochs=epochs), retained, progress=False,
                                 model_options=cell.config.get("model_options"))
    return model.eval()


def describe_means(reports: list[dict]) -> str:
    """The gap of the means (as `gap_of_means`) and, per Avg. Gap term, both models' means in %."""
    first, second = (mean_table([report["models"][role] for report in reports]) for role in ("unlearned", "retrained"))
    gap = gap_to_retrain(first, second)
    first_levels, second_levels = flatten(first), flatten(second)
    means = ", ".join(f"{term} {100 * first_levels[term]:.1f} / {100 * second_levels[term]:.1f}"
                      for term in gap["avg_gap_terms"])
    return f"of the means {describe_gap(gap)}; means (%) {means}"


if __name__ == "__main__":
    raise SystemExit(main())
