"""`speech-unlearn forget` (placeholder until its layer lands)."""

from __future__ import annotations


def register(subparsers) -> None:
    subparsers.add_parser("forget", help="(not available yet)")
