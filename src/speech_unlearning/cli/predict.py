"""`speech-unlearn predict`: classify audio files with any checkpoint (trained, unlearned or imported).

    speech-unlearn predict runs/kws-req42 clip1.wav clip2.flac
    speech-unlearn predict runs/kws-req42 clips/*.wav --json --top 3

Each file is read as the toolkit reads training data (mono, resampled to 16 kHz, padded or
cropped to the checkpoint's clip length), featurised as the model expects, and classified.
Prints one line per file: the file, the label and its probability (softmax of the logits);
--json prints a JSON list instead, with the --top most probable labels of each file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="print the label and confidence a checkpoint gives audio files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="checkpoint folder")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="audio files (any format soundfile reads)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of one line per file")
    parser.add_argument("--top", type=int, default=1, metavar="K", help="labels listed per file with --json (default: 1)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="files classified together (default: 32)")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N (default: cpu)")
    parser.set_defaults(handler=run)


def classify(model, spec, label_names: list[str], files: list[Path], batch_size: int, device) -> np.ndarray:
    """(files, classes) probabilities, decoding and featurising `batch_size` files at a time."""
    import torch

    from ..data.audio import fit_length, read_wav
    from ..data.features import featurise

    rows = []
    for first in range(0, len(files), batch_size):
        clips = np.stack([fit_length(read_wav(path, spec.sample_rate), spec.clip_samples) for path in files[first : first + batch_size]])
        inputs = torch.from_numpy(np.ascontiguousarray(featurise(clips, spec))).to(device)
        with torch.no_grad():
            rows.append(torch.softmax(model(inputs).float(), dim=1).cpu().numpy())
    return np.concatenate(rows)


def check_checkpoint_folder(folder: Path) -> None:
    """A clear error for a missing folder, or for the audit-only folder of a request that failed verification."""
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint {folder}: no such checkpoint folder")
    if (folder / "audit.json").is_file() and not (folder / "metadata.json").is_file():
        raise ValueError(
            f"checkpoint {folder}: holds only the audit of a deletion request that failed verification, no model "
            "(`forget --keep-failed` writes the checkpoint anyway)"
        )


def run(args: argparse.Namespace) -> int:
    from ..data.features import FeatureSpec
    from ..models.checkpoint import load_checkpoint
    from ..training.runtime import select_device

    check_checkpoint_folder(args.checkpoint)
    if args.top < 1 or args.batch_size < 1:
        raise ValueError(f"--top {args.top} / --batch-size {args.batch_size}: must be at least 1")
    device = select_device(args.device)
    model, metadata = load_checkpoint(args.checkpoint, device=device)
    labels = list(metadata["label_names"])
    spec = FeatureSpec(**metadata["feature_spec"])
    probabilities = classify(model, spec, labels, list(args.files), args.batch_size, device)
    best = probabilities.argmax(axis=1)
    if args.json:
        records = []
        for path, row in zip(args.files, probabilities):
            order = np.argsort(-row, kind="stable")[: args.top]
            top = [{"label": labels[i], "probability": float(row[i])} for i in order]
            records.append({"file": str(path), "label": top[0]["label"], "confidence": top[0]["probability"], "top": top})
        print(json.dumps(records, indent=2))
        return 0
    for path, index, row in zip(args.files, best, probabilities):
        print(f"{path}\t{labels[index]}\t{row[index]:.4f}")
    return 0
