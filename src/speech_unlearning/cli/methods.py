"""`speech-unlearn methods` (placeholder until its layer lands)."""

from __future__ import annotations


def register(subparsers) -> None:
    subparsers.add_parser("methods", help="(not available yet)")
