"""`speech-unlearn evaluate`: measure how well a checkpoint forgot its forget set.

    speech-unlearn evaluate --checkpoint runs/kws-forgot-jackson --split splits/jackson.json \\
        --reference runs/kws-retrained --original runs/kws-original

The corpus is reloaded from the spec the checkpoint records (or --corpus), the checkpoint and
the split are checked against it, and every metric (accuracy on Df / Dr / Dtest, loss and SVC
membership inference, representation probe, relearning attack, time) is computed for each
model given. With --reference (a model retrained on Dr) the report adds the gap of every
metric to it and the Avg. Gap. report.json and report.md go to --out (default: the folder
`<checkpoint>-eval` beside the checkpoint); the headline table is printed.

Several unlearned models (--checkpoint repeated: one method, other seeds) and several Retrains
(--reference repeated, or a folder of Retrain checkpoints) are scored as ensembles: every model
gets the same metrics, and the report adds, per row (the unlearned models, the Original, the
first half of the Retrains against the second), the forgetting score, U-LiRA and the informed
attack (K >= 3 on both sides), the Retrain spread of every metric, "indistinguishable from Retrain
on N of M metrics", and the no-op / nothing-measurable-to-forget verdicts:

    speech-unlearn evaluate --checkpoint runs/u0 --checkpoint runs/u1 --checkpoint runs/u2 \\
        --reference runs/retrains/ --original runs/kws-original
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..data.corpus import CorpusError, default_cache_dir
from ..data.loaders import load_corpus

CHECKPOINT_OPTIONS = ("--checkpoint", "--reference", "--original")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="measure forgetting and remaining utility of a checkpoint; writes report.json / report.md",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    folder = dict(type=Path, metavar="DIR")
    parser.add_argument("--checkpoint", required=True, action="append", **folder,
                        help="checkpoint folder of the unlearned model; repeat for one method's other seeds")
    parser.add_argument(
        "--split", type=Path, metavar="FILE", help="split JSON file (default: the split recorded in the checkpoint)"
    )
    parser.add_argument("--reference", action="append", **folder,
                        help="checkpoint retrained on Dr (enables the gap to retrain), or a folder of such "
                             "checkpoints; repeat for a Retrain ensemble (the first one is the gap's reference)")
    parser.add_argument("--original", **folder, help="checkpoint of the model before unlearning, for comparison")
    parser.add_argument("--out", **folder, help="report folder (default: <checkpoint>-eval beside the checkpoint)")
    parser.add_argument(
        "--metrics", metavar="A,B", help="comma-separated metric names to compute (default: all registered metrics)"
    )
    parser.add_argument(
        "--corpus", metavar="SPEC", help="corpus spec to load instead of the one the checkpoint records (data moved)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="cache for corpora and features (default: $SPEECH_UNLEARNING_CACHE or ~/.cache/speech_unlearning)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every subsample and attack (default: 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument(
        "--unlearn-seconds",
        type=float,
        metavar="SECONDS",
        help="unlearning wall time (default: the time of the last request recorded in the checkpoint)",
    )
    parser.add_argument(
        "--retrain-seconds",
        type=float,
        metavar="SECONDS",
        help="retraining wall time (default: recorded in the --reference checkpoint)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


# --- argument checks (before anything is loaded) --------------------------------------------


def parse_metric_names(text: str | None) -> list[str] | None:
    """"a,b" -> ["a", "b"], each checked against the registry (UnknownNameError lists valid names)."""
    from ..evaluation import METRICS

    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--metrics {text!r}: give at least one name; valid names: {', '.join(METRICS.names())}")
    for name in names:
        METRICS.get(name)
    return names


def _folders(args: argparse.Namespace, option: str) -> list[Path]:
    """The folders given with `option` (repeatable options are lists, --original one path or None)."""
    value = getattr(args, option.lstrip("-"))
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def check_paths(args: argparse.Namespace) -> None:
    """Every checkpoint folder and the split file must exist; --out must not be a file."""
    for option in CHECKPOINT_OPTIONS:
        for folder in _folders(args, option):
            if not folder.is_dir():
                raise FileNotFoundError(f"{option} {folder}: no such checkpoint folder")
    if args.split is not None and not args.split.is_file():
        raise FileNotFoundError(f"--split {args.split}: no such split file")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out}: exists and is not a folder")


def expand_checkpoints(folders: list[Path], option: str) -> list[Path]:
    """Each folder that is a checkpoint, else its sub-folders that are (sorted by name); a folder
    with neither is an error naming it."""
    from ..models.checkpoint import WEIGHTS_FILE

    expanded = []
    for folder in folders:
        if (folder / WEIGHTS_FILE).is_file():
            expanded.append(folder)
            continue
        inside = sorted(child for child in folder.iterdir() if (child / WEIGHTS_FILE).is_file())
        if not inside:
            raise FileNotFoundError(f"{option} {folder}: neither a checkpoint nor a folder of checkpoints")
        expanded += inside
    return expanded


def default_output(checkpoint: Path) -> Path:
    """`runs/model` -> `runs/model-eval`."""
    checkpoint = checkpoint.resolve()
    return checkpoint.parent / f"{checkpoint.name}-eval"


# --- loading ----------------------------------------------------------------------------------


def corpus_request(metadata: dict, override: str | None, checkpoint: Path) -> tuple[str, str]:
    """(corpus spec, task) that reload the corpus a checkpoint was trained on."""
    recorded = metadata.get("corpus") or {}
    spec = override or recorded.get("spec")
    if not spec:
        raise CorpusError(f"checkpoint {checkpoint} does not record its corpus spec; pass --corpus SPEC")
    if recorded.get("task") is None:
        raise CorpusError(f"checkpoint {checkpoint} does not record its task (kws or sid)")
    return spec, recorded["task"]


def feature_spec_of(metadata: dict, checkpoint: Path):
    """The FeatureSpec a checkpoint's model reads, validated field by field."""
    from ..config import from_mapping
    from ..data.features import FeatureSpec

    recorded = metadata.get("feature_spec")
    if not isinstance(recorded, dict):
        raise ValueError(f"checkpoint {checkpoint} records no feature_spec")
    return from_mapping(FeatureSpec, recorded, where=f"checkpoint {checkpoint} feature_spec")


def load_model_for(folder: Path, option: str, corpus, feature_spec, device) -> tuple[Any, dict]:
    """(model in eval mode on `device`, metadata) of a checkpoint made for `corpus` and `feature_spec`.

    load_checkpoint checks the label names and the feature spec (every model of one report reads
    the same feature array); the corpus fingerprint must match too, so a checkpoint trained on
    another version of the data is refused.
    """
    from ..models.checkpoint import load_checkpoint

    model, metadata = load_checkpoint(
        folder, expect_label_names=corpus.label_names, expect_feature_spec=feature_spec, device=device
    )
    recorded = metadata.get("corpus") or {}
    if recorded.get("fingerprint") != corpus.fingerprint:
        raise CorpusError(
            f"{option} {folder}: trained on corpus {recorded.get('name')!r} version "
            f"{str(recorded.get('fingerprint'))[:12]}..., but {corpus.name!r} is now version "
            f"{corpus.fingerprint[:12]}... (the data changed, or it is another corpus)"
        )
    return model, metadata


def load_forget_split_for(path: Path | None, metadata: dict, corpus, checkpoint: Path):
    """The split from `path`, else the one the checkpoint records; checked against `corpus`."""
    from ..data.splits import load_forget_split
    from ..forgetting.history import recorded_split

    if path is not None:
        return load_forget_split(path, corpus)
    # Plain, or keyed hashes found again in `corpus`; CorpusError if it does not fit this corpus.
    forget_split = recorded_split(metadata, corpus, f"split recorded in checkpoint {checkpoint}")
    if forget_split is None:
        raise ValueError(f"checkpoint {checkpoint} records no split; pass --split FILE")
    return forget_split


def unlearn_seconds_of(metadata: dict) -> float | None:
    """Wall time of the last deletion request the checkpoint records (None for an original model)."""
    history = metadata.get("history") or []
    seconds = history[-1].get("seconds") if history else None
    return float(seconds) if seconds is not None else None


def retrain_seconds_of(metadata: dict) -> float | None:
    """Training time of a retrained checkpoint: its `retrain` request, else its recorded training time."""
    history = metadata.get("history") or []
    if history and history[-1].get("method") == "retrain" and history[-1].get("seconds") is not None:
        return float(history[-1]["seconds"])
    seconds = (metadata.get("metrics") or {}).get("train_seconds")
    return float(seconds) if seconds is not None else None


# --- the command ------------------------------------------------------------------------------


def _method_name(metadata: dict) -> str:
    """The unlearning method the checkpoint records last, else "unlearned"."""
    history = metadata.get("history") or []
    return str(history[-1].get("method") or "unlearned") if history else "unlearned"


def ensemble_rows(models: list, references: list, original, tables: list, reference_tables: list,
                  original_table: dict | None, forget, method: str) -> list[dict]:
    """Rows of the unlearned models, the Original (if given) and the Retrain halves (K >= 4) against
    the Retrains (evaluation/retrain_ensemble.py)."""
    from ..evaluation import is_no_op, stack_logits
    from ..evaluation import retrain_ensemble as ensemble
    from ..evaluation.per_example import view_labels

    labels = view_labels(forget)
    retrained = ensemble.pool_of(stack_logits(references, forget), reference_tables)
    no_op = original is not None and all(is_no_op(model, original) for model in models)
    rows = [ensemble.method_row(method, labels, ensemble.pool_of(stack_logits(models, forget), tables), retrained,
                                tables, reference_tables, no_op)]
    if original is not None and original_table is not None:
        rows.append(ensemble.original_row(labels, ensemble.pool_of(stack_logits([original], forget), [original_table]),
                                          retrained, [original_table], reference_tables))
    halves = ensemble.retrain_reference_row(labels, retrained, reference_tables)
    return rows + ([halves] if halves is not None else [])


def run(args: argparse.Namespace) -> int:
    from ..data.features import load_features
    from ..evaluation import evaluate_unlearning, format_summary, write_report
    from ..models.checkpoint import read_metadata
    from ..training.runtime import select_device

    metrics = parse_metric_names(args.metrics)
    check_paths(args)
    checkpoints = expand_checkpoints(args.checkpoint, "--checkpoint")
    references = expand_checkpoints(args.reference or [], "--reference")
    if len(checkpoints) > 1 and not references:
        raise ValueError("--checkpoint given several times: pass the Retrains too (--reference, repeatable)")
    device = select_device(args.device)
    subject_metadata = read_metadata(checkpoints[0])
    spec, task = corpus_request(subject_metadata, args.corpus, checkpoints[0])
    cache_dir = args.cache_dir or default_cache_dir()
    corpus = load_corpus(spec, task, cache_dir=cache_dir)
    feature_spec = feature_spec_of(subject_metadata, checkpoints[0])
    load = lambda folder, option: load_model_for(folder, option, corpus, feature_spec, device)  # noqa: E731
    unlearned = [load(folder, "--checkpoint") for folder in checkpoints]
    retrained = [load(folder, "--reference") for folder in references]
    model, metadata = unlearned[0]
    forget_split = load_forget_split_for(args.split, metadata, corpus, checkpoints[0])
    features = load_features(corpus, feature_spec, cache_dir, progress=not args.no_progress)
    original, _ = load(args.original, "--original") if args.original is not None else (None, {})
    reference, reference_metadata = retrained[0] if retrained else (None, {})
    unlearn_seconds = args.unlearn_seconds if args.unlearn_seconds is not None else unlearn_seconds_of(metadata)
    retrain_seconds = args.retrain_seconds
    if retrain_seconds is None:
        retrain_seconds = retrain_seconds_of(reference_metadata)
    common = dict(metrics=metrics, seed=args.seed, progress=not args.no_progress)
    report = evaluate_unlearning(
        model, features, corpus, forget_split, original=original, reference=reference, unlearn_seconds=unlearn_seconds,
        retrain_seconds=retrain_seconds, **common,
    )
    if len(unlearned) > 1 or len(retrained) > 1:
        report["ensemble"] = _ensemble_section(report, unlearned, retrained, original, features, corpus, forget_split,
                                               common)
    json_path, md_path = write_report(args.out or default_output(checkpoints[0]), report)
    print(format_summary(report))
    if "ensemble" in report:
        print("\n" + _format_ensemble(report["ensemble"]))
    print(f"\nreport: {json_path} and {md_path}", file=sys.stderr)
    return 0


def _ensemble_section(report: dict, unlearned: list, retrained: list, original, features, corpus, forget_split,
                      common: dict) -> dict:
    """Every other model scored with the same metrics (no reference: only its own table is used),
    then the ensemble rows."""
    from ..evaluation import evaluate_unlearning
    from ..training.data import ArrayData

    def table(model) -> dict:
        return evaluate_unlearning(model, features, corpus, forget_split, **common)["models"]["unlearned"]

    tables = [report["models"]["unlearned"]] + [table(model) for model, _ in unlearned[1:]]
    reference_tables = ([report["models"]["retrained"]] if retrained else []) + [table(m) for m, _ in retrained[1:]]
    forget = ArrayData(features, corpus.labels, forget_split.forget_indices(corpus))
    rows = ensemble_rows([m for m, _ in unlearned], [m for m, _ in retrained], original, tables, reference_tables,
                         report["models"].get("original"), forget, _method_name(unlearned[0][1]))
    return {"rows": rows, "n_unlearned": len(unlearned), "n_retrains": len(retrained)}


def _format_ensemble(section: dict) -> str:
    """The ensemble rows as a table, each row's headline, and the sign conventions."""
    from ..evaluation.retrain_ensemble import format_rows
    from ..experiments.report import ENSEMBLE_NOTES

    lines = [f"Against {section['n_retrains']} Retrains ({section['n_unlearned']} unlearned model(s)):",
             format_rows(section["rows"]), ""]
    lines += [f"{row['method']}: {row['spread']['headline']}" for row in section["rows"]]
    return "\n".join(lines + [""] + [f"- {note}" for note in ENSEMBLE_NOTES[1:]])
