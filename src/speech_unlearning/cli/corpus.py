"""`speech-unlearn corpus` (placeholder until its layer lands)."""

from __future__ import annotations


def register(subparsers) -> None:
    subparsers.add_parser("corpus", help="(not available yet)")
