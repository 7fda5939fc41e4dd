"""`speech-unlearn import`: turn a deployed model into a toolkit checkpoint that every command reads.

    speech-unlearn import --hf models/kws-wav2vec2 --data manifest:data/clips.csv --task kws \\
        --init models/wav2vec2-base --out runs/kws-deployed
    speech-unlearn import --torchscript kws.pt --input logmel --labels yes,no,up,down \\
        --data fsdd --task kws --init scratch --out runs/kws-ts
    speech-unlearn import --torch-factory mypackage.models:build_kws --factory-args '{"classes": 10}' \\
        --weights kws.safetensors --input waveform --labels-file labels.txt --data fsdd --task kws --out runs/kws-py

Sources (one of):
  --hf DIR               a local save_pretrained folder of any supported AutoModelForAudioClassification
                         (config.json, model.safetensors, preprocessor_config.json). Its head, label map
                         and feature extractor are kept; the model takes 16 kHz waveforms.
  --torchscript FILE     a torch.jit.save archive taking --input (waveform or the toolkit's logmel)
  --torch-factory M:F    package.module:function that builds the module, with --weights (safetensors)

The class names must be the corpus's (--data, --task): the model's head rows are put in the
corpus's order, and a mismatch is refused listing both sides. An HF model says its names in
config.json (id2label); a PyTorch model through --labels / --labels-file (output order) or a
`label_names` attribute.

--init records Retrain's starting point: the pretrained folder the model was fine-tuned from
(HF), a .safetensors file of the starting weights, or `scratch`; without it Retrain (and
`forget --verify-retrain`) refuse. The training recipe recorded for Retrain is the toolkit's
(transformer fine-tuning for HF, the small-model recipe otherwise); --set KEY=VALUE adjusts it.

The checkpoint records the corpus spec, so `unlearn`, `forget`, `evaluate`, `export` and
`predict` work on it as on a trained one. Loading a TorchScript or factory checkpoint in a new
process runs code that is not the toolkit's: it needs SPEECH_UNLEARNING_TRUSTED_CODE (printed
at import). The import prints, and records, the model's accuracy on the corpus's test split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import ConfigError, from_mapping, parse_overrides, to_dict
from ..data.corpus import TASKS, default_cache_dir
from ..data.loaders import load_corpus


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import a Hugging Face audio classifier or a PyTorch model as a checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hf", type=Path, metavar="DIR", help="save_pretrained folder of an audio classifier")
    source.add_argument("--torchscript", type=Path, metavar="FILE", help="TorchScript archive (torch.jit.save)")
    source.add_argument("--torch-factory", metavar="MODULE:FUNCTION", help="function that builds the PyTorch module")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder to write (must not exist, or --overwrite)")
    parser.add_argument("--data", required=True, metavar="CORPUS", help="corpus spec whose labels the model predicts")
    parser.add_argument("--task", required=True, choices=TASKS, help="kws (keyword spotting) or sid (speaker identification)")
    parser.add_argument(
        "--init", metavar="scratch|PATH",
        help="Retrain's starting point: the pretrained folder it was fine-tuned from, a .safetensors file, or scratch",
    )  # fmt: skip
    plain = parser.add_argument_group("PyTorch models (--torchscript, --torch-factory)")
    plain.add_argument("--input", choices=("waveform", "logmel"), help="what the model reads: 16 kHz waveforms or the toolkit's log-mel")
    plain.add_argument("--weights", type=Path, metavar="FILE", help="safetensors state dict (--torch-factory)")
    plain.add_argument("--factory-args", default="{}", metavar="JSON", help="keyword arguments of the factory, as a JSON object")
    plain.add_argument("--labels", metavar="A,B,...", help="class names in the model's output order")
    plain.add_argument("--labels-file", type=Path, metavar="FILE", help="class names in output order, one a line")
    plain.add_argument("--head", metavar="ATTR", help="the final Linear layer's attribute path (default: found by name)")
    parser.add_argument(
        "--freeze-feature-encoder", choices=("yes", "no"),
        help="HF: freeze the convolutional front end when unlearning (default: yes for wav2vec 2.0 kinds, no otherwise)",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="adjust the recorded training recipe (Retrain's), repeatable: keys of `speech-unlearn train --set`",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--cache-dir", type=Path, help="cache for corpora and features (default: $SPEECH_UNLEARNING_CACHE)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


# --- argument checks (before anything is loaded) --------------------------------------------


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse contradictory or missing options, naming them, before any data or model is read."""
    plain = args.hf is None
    if plain and args.input is None:
        raise ConfigError("--input is required for a PyTorch model: waveform (16 kHz) or logmel (the toolkit's)")
    if not plain:
        given = [flag for flag, value in (("--input", args.input), ("--weights", args.weights), ("--labels", args.labels),
                                          ("--labels-file", args.labels_file), ("--head", args.head)) if value]  # fmt: skip
        if given:
            raise ConfigError(f"{', '.join(given)}: only for PyTorch models; an HF folder says its labels and input itself")
    if plain and args.freeze_feature_encoder is not None:
        raise ConfigError("--freeze-feature-encoder: only for --hf models (a PyTorch model is trained as it comes)")
    if args.torch_factory is not None and args.weights is None:
        raise ConfigError("--torch-factory needs --weights FILE.safetensors (the deployed weights)")
    if args.torch_factory is None and args.weights is not None:
        raise ConfigError("--weights goes with --torch-factory (a TorchScript archive holds its weights)")
    if args.labels and args.labels_file:
        raise ConfigError("give the class names once: --labels or --labels-file")
    if args.out.exists() and not args.overwrite:
        raise ValueError(f"--out {args.out}: exists (pass --overwrite to replace it)")
    for flag, path, kind in (("--hf", args.hf, "folder"), ("--torchscript", args.torchscript, "file"),
                             ("--weights", args.weights, "file")):  # fmt: skip
        if path is not None and not (path.is_dir() if kind == "folder" else path.is_file()):
            raise FileNotFoundError(f"{flag} {path}: no such {kind}")


def factory_arguments(text: str) -> dict:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--factory-args: not JSON ({error})") from None
    if not isinstance(values, dict):
        raise ConfigError("--factory-args: must be a JSON object of keyword arguments")
    return values


def model_labels(args: argparse.Namespace) -> list[str] | None:
    """The class names given on the command line, in output order (None: ask the model)."""
    if args.labels:
        return [name.strip() for name in args.labels.split(",")]
    if args.labels_file:
        if not args.labels_file.is_file():
            raise FileNotFoundError(f"--labels-file {args.labels_file}: file not found")
        lines = args.labels_file.read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return None


def recipe(args: argparse.Namespace):
    """The training recipe recorded for Retrain: the toolkit's for this kind of model, with --set."""
    from ..training.config import TrainConfig
    from ..training.recipes import SMALL_MODEL_RECIPE, TRANSFORMER_RECIPE

    base = TRANSFORMER_RECIPE if args.hf is not None else SMALL_MODEL_RECIPE
    overrides = parse_overrides(args.overrides)
    return from_mapping(TrainConfig, {**to_dict(base), **overrides}, where="--set")


# --- the command ------------------------------------------------------------------------------


def imported_model(args: argparse.Namespace, corpus, spec):
    """(model, description of the source) for the chosen source, labels in the corpus's order."""
    from ..models.hf_import import import_hf_classifier
    from ..models.plain import import_factory, import_torchscript

    freeze = None if args.freeze_feature_encoder is None else args.freeze_feature_encoder == "yes"
    if args.hf is not None:
        model = import_hf_classifier(args.hf, corpus.label_names, init=args.init, freeze_feature_encoder=freeze)
        return model, {"kind": "hf", "path": str(args.hf.resolve()), "architecture": model.architecture}
    shape = spec.shape
    if args.torchscript is not None:
        model = import_torchscript(args.torchscript, corpus.label_names, shape, args.input, model_labels(args),
                                   args.head, args.init)  # fmt: skip
        return model, {"kind": "torchscript", "path": str(args.torchscript.resolve()),
                       "sha256": model.build_args["options"]["archive_sha256"]}  # fmt: skip
    model = import_factory(args.torch_factory, args.weights, corpus.label_names, shape, args.input,
                           factory_arguments(args.factory_args), model_labels(args), args.head, args.init)  # fmt: skip
    return model, {"kind": "torch-factory", "factory": args.torch_factory, "weights": str(args.weights.resolve())}


def run(args: argparse.Namespace) -> int:
    from ..data.features import feature_spec_for, load_features
    from ..models.checkpoint import save_checkpoint
    from ..training.data import ArrayData
    from ..training.inference import accuracy
    from ..training.recipes import checkpoint_metadata

    check_arguments(args)
    train_config = recipe(args)
    if args.init is not None and args.init != "scratch" and not Path(args.init).expanduser().exists():
        raise FileNotFoundError(f"--init {args.init}: no such file or folder (or pass --init scratch)")
    corpus = load_corpus(args.data, args.task, cache_dir=args.cache_dir or default_cache_dir())
    kind = "waveform" if args.hf is not None else args.input
    spec = feature_spec_for(corpus, kind)
    model, source = imported_model(args, corpus, spec)
    features = load_features(corpus, spec, cache_dir=args.cache_dir or default_cache_dir(), progress=not args.no_progress)
    metrics = {
        split: accuracy(model, ArrayData(features, corpus.labels, corpus.indices(split)), train_config.eval_batch_size)
        for split in ("validation", "test")
    }
    metadata = checkpoint_metadata(corpus, spec, model, train_config, {f"{k}_accuracy": v for k, v in metrics.items()},
                                   corpus_spec=args.data)  # fmt: skip
    metadata["imported_from"] = {
        **source,
        "label_order": model.source_label_order,  # the deployed model's output order
        "init": model.build_args["options"].get("init"),
        "train_config": "the toolkit's recipe for this kind of model with --set changes, not necessarily the deployed one's",
    }
    save_checkpoint(args.out, model.cpu(), finite(metadata))
    print_summary(args, corpus, model, source, metrics)
    return 0


def finite(value):
    """NaN accuracies (an empty split) -> None: checkpoint JSON refuses NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    return value


def print_summary(args: argparse.Namespace, corpus, model, source: dict, metrics: dict) -> None:
    from ..models.plain import TRUST_VARIABLE

    what = source.get("architecture") or source["kind"]
    print(f"imported {what}: {model.num_classes} classes of {corpus.name} ({corpus.task}), input {model.input_kind}")
    if model.source_label_order != list(corpus.label_names):
        print(f"head rows reordered: model order {', '.join(model.source_label_order)} -> corpus order "
              f"{', '.join(corpus.label_names)}")  # fmt: skip
    print("accuracy: " + ", ".join(f"{split} {value:.4f}" for split, value in metrics.items()))
    init = model.build_args["options"].get("init")
    print(f"Retrain starts from: {init or 'unknown (Retrain refuses; import again with --init)'}")
    entry = source.get("sha256") or source.get("factory")
    if entry:
        print(f"this model runs its own code; other processes load it with {TRUST_VARIABLE}={entry}", file=sys.stderr)
    print(f"checkpoint: {args.out}")

