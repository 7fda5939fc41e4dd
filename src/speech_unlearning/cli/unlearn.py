"""`speech-unlearn unlearn` (placeholder until its layer lands)."""

from __future__ import annotations


def register(subparsers) -> None:
    subparsers.add_parser("unlearn", help="(not available yet)")
