"""`speech-unlearn train` (placeholder until its layer lands)."""

from __future__ import annotations


def register(subparsers) -> None:
    subparsers.add_parser("train", help="(not available yet)")
