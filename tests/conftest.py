"""Shared fixtures: real corpora (FSDD, the embedded corpus) and a small trained model.

Everything is built once per test session inside a temporary cache, so tests never touch the
user's cache and never download anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# The CI machines have two cores; one intra-op thread per process is several times faster for
# the small models used in tests than letting torch oversubscribe them.
torch.set_num_threads(1)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FSDD = PROJECT_ROOT.parent / "shared" / "data" / "fsdd"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A cache folder shared by the whole test session (corpora, features)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    """The read-only FSDD copy beside the project, or $SPEECH_UNLEARNING_FSDD."""
    root = Path(os.environ.get("SPEECH_UNLEARNING_FSDD", DEFAULT_FSDD))
    if not (root / "recordings").is_dir():
        pytest.skip(f"FSDD not found at {root} (set SPEECH_UNLEARNING_FSDD to a clone of it)")
    return root


@pytest.fixture(scope="session")
def fsdd_kws(fsdd_root, cache_dir):
    from speech_unlearning.data.loaders import load_corpus

    return load_corpus(f"fsdd:{fsdd_root}", "kws", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def fsdd_sid(fsdd_root, cache_dir):
    from speech_unlearning.data.loaders import load_corpus

    return load_corpus(f"fsdd:{fsdd_root}", "sid", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def embedded_kws(cache_dir):
    from speech_unlearning.data.loaders import load_corpus

    return load_corpus("embedded", "kws", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def embedded_sid(cache_dir):
    from speech_unlearning.data.loaders import load_corpus

    return load_corpus("embedded", "sid", cache_dir=cache_dir)
