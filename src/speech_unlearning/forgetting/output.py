"""Where a deletion's results go, checked before any compute.

Every artefact of `forget` and `unlearn` (checkpoint, split.json, audit.json / audit.md) goes
inside `--out`, built under a temporary name and moved into place when complete, so an
interruption or a full disk leaves no half-written folder and no orphan beside it.

`check_output` refuses, before anything is loaded: `--out` equal to, inside or around the input
checkpoint; `--out` that exists and is not a folder; and a non-empty `--out` without
`--overwrite` (`unlearn` may replace a checkpoint of ours, its own earlier output, without it).
`check_writable` turns a read-only or too-full output disk into an `OutputError` (exit code 3)
before the compute rather than a traceback after it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OWN_MARKERS = ("metadata.json", "audit.json")  # a folder holding one of these was written by us
SPACE_MARGIN = 2.0  # free space wanted, as a multiple of the input checkpoint's size
MIN_FREE_BYTES = 16 * 1024 * 1024


class OutputError(OSError):
    """The output cannot be written (read-only, full disk): exit code 3, not a bad request."""


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def is_our_folder(folder: Path) -> bool:
    """Whether `folder` holds only what a checkpoint or an audit of ours holds (at least one marker)."""
    names = {entry.name for entry in folder.iterdir()}
    return any(marker in names for marker in OWN_MARKERS) and names <= {
        "metadata.json", "model.safetensors", "audit.json", "audit.md", "split.json",
    } | {name for name in names if name.endswith((".pt", ".onnx"))}


def check_output(out: Path, checkpoint: Path, overwrite: bool, replace_own: bool = False) -> None:
    """ValueError naming --out when it may not be written (see the module docstring)."""
    out_resolved, checkpoint_resolved = out.resolve(), checkpoint.resolve()
    if _within(out_resolved, checkpoint_resolved):
        raise ValueError(f"--out {out}: is or is inside the --checkpoint folder, which is never modified; "
                         "choose another folder")
    if _within(checkpoint_resolved, out_resolved):
        raise ValueError(f"--out {out}: contains the --checkpoint folder, which is never modified; choose another folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()) or overwrite:
        return
    if replace_own and is_our_folder(out):
        return
    what = "a checkpoint of ours" if is_our_folder(out) else "not a checkpoint of this tool"
    raise ValueError(f"--out {out}: folder exists, is not empty and is {what}; its files would be replaced: "
                     "choose another folder or pass --overwrite")


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_writable(out: Path, checkpoint: Path) -> None:
    """OutputError when --out's disk is read-only or has too little free space for the new checkpoint."""
    parent = _existing_ancestor(out.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: cannot write in {parent} (read-only or no permission)")
    size = sum(entry.stat().st_size for entry in checkpoint.iterdir() if entry.is_file())
    needed = max(int(SPACE_MARGIN * size), MIN_FREE_BYTES)
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise OutputError(f"--out {out}: only {free / 2**20:.1f} MiB free in {parent}, need about "
                          f"{needed / 2**20:.1f} MiB for the new checkpoint")
