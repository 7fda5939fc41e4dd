"""Real-size transformer backbones on a GPU: one short training run and one unlearning run each.

    .venv/bin/python benchmarks/bench_backbones.py --json backbones.json
        [--models whisper-tiny hubert-large ...] [--model-dir /models] [--steps 20] [--batch-size 8]
        [--method neggrad+] [--device auto] [--corpus SPEC --task kws] [--tiny]

For every registered real-size transformer backbone (`speech-unlearn` model names whose
`real_size` is true), or those named with --models, it builds the model at its published size,
with random weights unless --model-dir holds a local copy (`<model-dir>/<hub name>`, e.g.
/models/facebook/wav2vec2-base, or `<model-dir>/<model name>`), and times:

- train: `training.trainer.fit`, the transformer recipe (AdamW, linear warm-up and decay) for
  --steps optimiser steps of --batch-size clips;
- unlearn: `methods.unlearn` with --method (default neggrad+) capped at --steps steps,
  forgetting a tenth of the clips.

Per run it records the wall time, examples per second, optimiser steps and the peak GPU memory
allocated (`torch.cuda.max_memory_allocated`, reset before each run; null on a CPU), and writes
them as JSON with the device, torch / transformers versions and the settings. The clips are
seeded noise (1 s, 16 kHz) by default: the figures measure the machine, not accuracy; --corpus
runs the same on a real corpus's first clips instead.

--tiny runs the CPU-sized entries (tiny-whisper, tiny-wav2vec2, tiny-hubert) instead: what the
test-suite runs, since no GPU machine was available to this project (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.data.features import feature_spec_for, load_features
from speech_unlearning.methods import split_method_name, unlearn
from speech_unlearning.methods.base import dataclass_fields
from speech_unlearning.models.registry import create_model, model_info, model_names
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.recipes import TRANSFORMER_RECIPE
from speech_unlearning.training.runtime import select_device
from speech_unlearning.training.trainer import fit

TRANSFORMER_FAMILIES = ("whisper", "wav2vec2", "hubert")
SAMPLE_RATE = 16_000
NUM_CLASSES = 12  # the SUPERB keyword-spotting head size
FORGET_SHARE = 0.1


def transformer_names(tiny: bool) -> list[str]:
    """Registered transformer backbones: the real-size ones, or the CPU-sized ones with `tiny`."""
    return [
        name for name in model_names()
        if model_info(name).family in TRANSFORMER_FAMILIES and model_info(name).real_size != tiny
    ]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="backbones to run (default: every real-size transformer)")
    parser.add_argument("--tiny", action="store_true", help="the CPU-sized test entries instead of the real sizes")
    parser.add_argument("--model-dir", type=Path, help="folder of local pretrained copies (default: random weights)")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per run (default: 20)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per step (default: 8)")
    parser.add_argument("--method", default="neggrad+", help="unlearning method (default: neggrad+)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--corpus", help="real corpus spec instead of noise clips (its first clips are used)")
    parser.add_argument("--task", default="kws", choices=("kws", "sid"), help="task of --corpus (default: kws)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clips, weights and runs (default: 0)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    args = parser.parse_args(argv)
    valid = transformer_names(args.tiny)
    unknown = sorted(set(args.models or []) - set(valid))
    if unknown:
        parser.error(f"--models: {', '.join(unknown)} not among {', '.join(valid)}")
    if args.steps < 1 or args.batch_size < 2:
        parser.error("--steps must be >= 1 and --batch-size >= 2")
    return args


def noise_clips(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 16000) float32 seeded noise clips and labels cycling over the classes."""
    rng = np.random.default_rng(seed)
    clips = (0.1 * rng.standard_normal((count, SAMPLE_RATE))).astype(np.float32)
    return clips, np.arange(count) % NUM_CLASSES


def corpus_clips(spec: str, task: str, count: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The first `count` clips of a real corpus as waveforms, their labels and the class count."""
    corpus = load_corpus(spec, task)
    features = load_features(corpus, feature_spec_for(corpus, "waveform"), progress=False)
    rows = np.arange(min(count, len(corpus)))
    return np.asarray(features[rows]), corpus.labels[rows], corpus.num_classes


def model_options(name: str, model_dir: Path | None) -> dict:
    """Random weights at the published size, or a local copy under --model-dir when there is one."""
    if model_dir is not None:
        source = model_info(name).default_source
        for candidate in (model_dir / source if source else None, model_dir / name):
            if candidate is not None and candidate.is_dir():
                return {"source": str(candidate), "pretrained": True}
    return {"pretrained": False}


def peak_memory_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def timed_runs(name: str, data: ArrayData, num_classes: int, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """One training run and one unlearning run of `name`, each with its time, throughput and memory."""
    torch.manual_seed(args.seed)
    options = model_options(name, args.model_dir)
    model = create_model(name, num_classes, **options).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    config = dataclasses.replace(TRANSFORMER_RECIPE, epochs=1, batch_size=args.batch_size, seed=args.seed,
                                 device=str(device), progress=False)  # fmt: skip
    reset_peak(device)
    trained = fit(model, data, None, config)
    runs = [row(name, "train", trained.seconds, trained.steps, trained.examples, parameters, options, device)]
    forget_count = max(1, int(len(data) * FORGET_SHARE))
    forget, retain = data.subset(np.arange(forget_count)), data.subset(np.arange(forget_count, len(data)))
    reset_peak(device)
    result = unlearn(args.method, model, forget, retain, overrides=batch_override(args.method, args.batch_size),
                     seed=args.seed, train_config=config, budget_steps=args.steps)  # fmt: skip
    examples = result.steps * args.batch_size  # per step; NegGrad+ reads a forget and a retain batch per step
    runs.append(row(name, f"unlearn ({args.method})", result.seconds, result.steps, examples, parameters, options, device))
    del model, result
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return runs


def batch_override(method: str, batch_size: int) -> dict:
    """{"batch_size": ...} for methods that have one (SSD, for one, takes no steps)."""
    method_class, _ = split_method_name(method)
    return {"batch_size": batch_size} if "batch_size" in dataclass_fields(method_class.config_class) else {}


def row(name, phase, seconds, steps, examples, parameters, options, device) -> dict:
    return {
        "model": name,
        "phase": phase,
        "seconds": seconds,
        "steps": steps,
        "examples": examples,
        "examples_per_second": examples / seconds if seconds > 0 else None,
        "peak_gpu_memory_mib": peak_memory_mib(device),
        "parameters": parameters,
        "weights": options.get("source", "random (published size)"),
    }


def machine(device: torch.device) -> dict:
    import transformers

    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = select_device(args.device)
    count = args.steps * args.batch_size
    if args.corpus:
        clips, labels, num_classes = corpus_clips(args.corpus, args.task, count)
    else:
        (clips, labels), num_classes = noise_clips(count, args.seed), NUM_CLASSES
    data = ArrayData(clips, labels, np.arange(len(clips)))
    runs = []
    for name in args.models or transformer_names(args.tiny):
        started = time.perf_counter()
        runs.extend(timed_runs(name, data, num_classes, args, device))
        print(f"{name}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report = {"machine": machine(device), "settings": settings, "runs": runs}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for run in runs:
        memory = "-" if run["peak_gpu_memory_mib"] is None else f"{run['peak_gpu_memory_mib']:.0f} MiB"
        print(f"{run['model']:<16} {run['phase']:<20} {run['seconds']:8.2f} s {run['examples_per_second'] or 0:8.1f} ex/s {memory}")
    print(f"results: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
