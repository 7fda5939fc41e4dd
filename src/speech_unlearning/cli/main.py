"""`speech-unlearn`: the command-line entry point.

Each subcommand lives in its own module of this package and exposes `register(subparsers)`,
which adds its parser and sets `handler` to the function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__

# Subcommand modules, in the order `--help` lists them.
COMMAND_MODULES = (
    "corpus", "train", "methods", "unlearn", "evaluate", "bench", "report", "forget", "import_model", "export", "predict",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-unlearn",
        description=(
            "Machine unlearning for keyword-spotting and speaker-ID models: build corpora, train, "
            "forget recordings / speakers / keywords, and measure how well they were forgotten."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); exit quietly as other Unix tools do.
        sys.stderr.close()
        return 0
    except (ValueError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError) as error:
        # User-facing errors (bad config, corpus, audio, checkpoint, name) carry a message that
        # names the culprit; a traceback would only bury it. SPEECH_UNLEARNING_DEBUG=1 shows it.
        if os.environ.get("SPEECH_UNLEARNING_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
