"""`speech-unlearn report` (placeholder until its layer lands)."""

from __future__ import annotations


def register(subparsers) -> None:
    subparsers.add_parser("report", help="(not available yet)")
