"""`speech-unlearn evaluate` (placeholder until its layer lands)."""

from __future__ import annotations


def register(subparsers) -> None:
    subparsers.add_parser("evaluate", help="(not available yet)")
