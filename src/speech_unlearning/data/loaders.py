"""Every corpus loader, registered, and `load_corpus`, which picks one by its corpus spec.

Why `load_corpus` lives here and not beside `Corpus` in `corpus`: every loader module imports
`corpus` (for `Corpus`, `Utterance`, `CorpusError` and the `CORPORA` registry it registers
into), and `load_corpus` needs all of them registered first. Keeping it in `corpus` made a
circle (corpus -> loaders -> each loader -> corpus); here the imports only point down. A new
loader is added by importing its module below.
"""

from __future__ import annotations

from pathlib import Path

from . import embedded, fsdd, hf_dataset, manifest, speech_commands, voxceleb  # noqa: F401  (register on import)
from .corpus import CORPORA, TASKS, Corpus, CorpusError, default_cache_dir, parse_corpus_spec

__all__ = ["load_corpus"]


def load_corpus(spec: str, task: str, cache_dir: str | Path | None = None, **options) -> Corpus:
    """Load the corpus named by `spec` for `task`.

    `spec` is a registered corpus name, optionally followed by `:PATH` for data a user has
    locally (`speech-commands:/data/speech_commands_v0.01`). `options` go to the loader.
    """
    name, path = parse_corpus_spec(spec)
    loader = CORPORA.get(name)
    if task not in TASKS:
        raise CorpusError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return loader(task=task, path=path, cache_dir=cache, **options)
