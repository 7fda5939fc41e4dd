"""Imports every corpus loader module so that each registers itself in `CORPORA`.

`load_corpus` imports this module; a new loader is added by importing its module here.
"""

from __future__ import annotations

from . import embedded, fsdd, hf_dataset, manifest, speech_commands, voxceleb  # noqa: F401  (register on import)

__all__ = ["embedded", "fsdd", "hf_dataset", "manifest", "speech_commands", "voxceleb"]
