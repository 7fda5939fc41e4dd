"""`speech-unlearn export`: write a checkpoint's model for use outside the toolkit, on 16 kHz waveforms.

    speech-unlearn export runs/kws-req42 --format onnx --out exported/kws-onnx
    speech-unlearn export runs/kws-req42 --format torchscript --out exported/kws-ts
    speech-unlearn export runs/kws-req42 --format hf --out exported/kws-hf

onnx and torchscript: one graph from waveforms (batch, samples) to logits; it pads or crops to
the checkpoint's clip length and runs the front end itself. hf: a transformers save_pretrained
folder with its feature extractor (imported Hugging Face classifiers and the registry's
transformer backbones). Each folder also gets labels.json and export.json, which records the
largest logit difference to the toolkit on a probe batch, measured by running the export
(onnxruntime, torch.jit.load, transformers); an export beyond the tolerance is not written.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from ..models.export import FORMATS

    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint as ONNX, TorchScript or a Hugging Face folder taking 16 kHz waveforms",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="checkpoint folder (trained, unlearned or imported)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="hf | onnx | torchscript")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (must not exist, or --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import checkpoint_sha256, load_checkpoint
    from ..models.export import export_model
    from .predict import check_checkpoint_folder

    check_checkpoint_folder(args.checkpoint)
    if args.out.exists() and not args.overwrite:
        raise ValueError(f"--out {args.out}: exists (pass --overwrite to replace it)")
    if args.out.resolve() == args.checkpoint.resolve() or args.checkpoint.resolve() in args.out.resolve().parents:
        raise ValueError(f"--out {args.out}: must lie outside the checkpoint folder, which is only read")
    model, metadata = load_checkpoint(args.checkpoint)
    result = export_model(model, metadata, args.format, args.out, checkpoint_sha256(args.checkpoint))
    print(f"{args.format} export of {metadata['model']['name']}: {', '.join(result.files)}")
    print(f"largest logit difference to the toolkit on the probe clips: {result.max_abs_difference:.2e}")
    print(f"written: {result.folder}")
    return 0
