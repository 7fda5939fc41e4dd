"""The registered loader of corpus spec `embedded` (or `embedded:PATH`): build if needed, then read.

The corpus is read back through the real loaders (`load_speech_commands` for kws,
`load_voxceleb1` for sid), so the default corpus exercises the same code as real data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ...config import ConfigError, from_mapping, to_dict
from ..corpus import CORPORA, Corpus, CorpusError, default_cache_dir
from ..speech_commands import load_speech_commands
from ..voxceleb import load_voxceleb1
from .build import build_embedded_corpus, embedded_root
from .config import EmbeddedConfig
from .verify import embedded_corpus_is_current, read_manifest

LOADER_OPTIONS = ("config", "progress", "workers", "force")


def stored_config(root: str | Path) -> EmbeddedConfig | None:
    """The config of the valid corpus at `root`, or None when there is none (or it is damaged)."""
    try:
        config = from_mapping(EmbeddedConfig, read_manifest(root)["config"])
    except (FileNotFoundError, ValueError):  # ConfigError is a ValueError too
        return None
    return config if embedded_corpus_is_current(root, config) else None


def _config_from_options(options: dict[str, Any], root: Path) -> EmbeddedConfig:
    """The config the loader should use.

    Explicit options win: `config=` (an EmbeddedConfig or a mapping) and/or EmbeddedConfig
    fields given directly (seed=1). Without them, the valid corpus already at `root` is used
    whatever its config (so `speech-unlearn corpus build --seed 1` is what later commands
    read), and the default config is built when there is none.
    """
    given = options.pop("config", None)
    overrides = {key: options.pop(key) for key in list(options) if key not in LOADER_OPTIONS}
    if given is None and not overrides:
        return stored_config(root) or EmbeddedConfig()
    if isinstance(given, EmbeddedConfig):
        base = to_dict(given)
    elif given is None or isinstance(given, dict):
        base = dict(given or {})
    else:
        raise CorpusError(
            f"corpus 'embedded': option config must be an EmbeddedConfig or a mapping, got {type(given).__name__}"
        )
    try:
        return from_mapping(EmbeddedConfig, {**base, **overrides}, where="corpus 'embedded'")
    except ConfigError as error:
        raise CorpusError(str(error)) from None


@CORPORA.register("embedded")
def load_embedded(task: str, path: str | None = None, cache_dir: str | Path | None = None, **options) -> Corpus:
    """Corpus spec `embedded` (in the cache) or `embedded:PATH`: builds if needed, then reads it.

    Options: `config` (EmbeddedConfig or mapping) or any EmbeddedConfig field (e.g. seed=1);
    without them the valid corpus already there is read, or the default one is built (see
    `_config_from_options`). Also `progress` (default True), `workers` (default 2) and `force`
    (rebuild). The KWS task reads ROOT/kws with `load_speech_commands(setup="superb12")`, the
    SID task reads ROOT/sid with `load_voxceleb1(clip_seconds=config.sid_clip_seconds)`.
    """
    if task not in ("kws", "sid"):
        raise CorpusError(f"corpus 'embedded' provides the tasks kws, sid, not {task!r}")
    options = dict(options)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = Path(path).expanduser() if path else embedded_root(cache_dir)
    config = _config_from_options(options, root)
    root = build_embedded_corpus(
        cache_dir, config, force=bool(options.get("force", False)), progress=bool(options.get("progress", True)),
        root=root if path else None, workers=int(options.get("workers", 2)),
    )  # fmt: skip
    if task == "kws":
        corpus = load_speech_commands(root / "kws", setup="superb12", cache_dir=cache_dir)
    else:
        corpus = load_voxceleb1(root / "sid", clip_seconds=config.sid_clip_seconds)
    manifest = read_manifest(root)
    info = {
        **corpus.info,
        "source": corpus.name,
        "corpus_hash": manifest["corpus_hash"],
        "embedded_config": manifest["config"],
    }
    return dataclasses.replace(corpus, name=f"embedded-{task}", info=info)
