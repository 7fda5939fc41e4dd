"""`speech-unlearn bench` (placeholder until its layer lands)."""

from __future__ import annotations


def register(subparsers) -> None:
    subparsers.add_parser("bench", help="(not available yet)")
