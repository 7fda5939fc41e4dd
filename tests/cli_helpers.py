"""Shared by the CLI tests: run `speech-unlearn` in-process, and the settings that keep a real
unlearning run cheap or make a verdict lenient."""

from __future__ import annotations

import contextlib
import io

from speech_unlearning.cli.main import main

# One pass of gradient ascent over Df: the cheapest real unlearning run.
QUICK_METHOD = ["--method", "gradascent", "--set", "epochs=1"]
# Thresholds every outcome meets: for tests of the pipeline rather than of the verdict.
LENIENT = [
    "--threshold", "forget_tolerance_pp=100", "--threshold", "mia_tolerance_pp=50",
    "--threshold", "max_test_drop_pp=100", "--threshold", "max_remaining_drop_pp=100",
]  # fmt: skip


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run the real CLI in-process; returns (exit code, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(argv)
    return status, stdout.getvalue(), stderr.getvalue()
