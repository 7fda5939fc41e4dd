"""`speech-unlearn report RUN_DIR`: paper-style tables, CSV, HTML and plots of a run folder.

Reads RUN_DIR/runs.sqlite (written by `speech-unlearn bench`) and writes RUN_DIR/report/:
report.md, results.csv, runs.csv, report.html (self-contained) and plots/*.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write the benchmark report (tables, CSV, HTML, plots) of a run folder",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("run_dir", type=Path, help="run folder of `speech-unlearn bench` (holds runs.sqlite)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (tables only)")
    parser.add_argument("--quiet", action="store_true", help="do not print the tables")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..experiments.report import format_terminal, write_report_files

    if not args.run_dir.is_dir():
        raise NotADirectoryError(f"run folder not found: {args.run_dir}")
    paths = write_report_files(args.run_dir, plots=not args.no_plots)
    if not args.quiet:
        print(format_terminal(args.run_dir))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
