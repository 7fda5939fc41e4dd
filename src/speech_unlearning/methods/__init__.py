"""Unlearning methods: one short file per method, one registry, one engine.

Importing this package registers every method in `METHODS`. Run one with
`unlearn(name, original_model, forget, retain, overrides, budget_seconds, seed, ...)`;
`describe_methods()` lists them with their defaults.
"""

from . import (  # noqa: F401  (each module registers its method)
    bad_teaching,
    calibrated,
    finetune,
    gradascent,
    l1_sparse,
    neggrad_plus,
    randlabel,
    retrain,
    salun,
    scrub,
    ssd,
)
from .base import (
    METHODS,
    SUPERLOSS_SUFFIX,
    Method,
    MethodConfig,
    UnlearnContext,
    UnlearnResult,
    describe_methods,
    method_names,
    register_method,
    split_method_name,
)
from .engine import parse_method_config, unlearn
from .superloss import SuperLossConfig

__all__ = [
    "METHODS",
    "SUPERLOSS_SUFFIX",
    "Method",
    "MethodConfig",
    "SuperLossConfig",
    "UnlearnContext",
    "UnlearnResult",
    "describe_methods",
    "method_names",
    "parse_method_config",
    "register_method",
    "split_method_name",
    "unlearn",
]
