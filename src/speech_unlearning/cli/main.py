"""`speech-unlearn`: the command-line entry point.

Each subcommand lives in its own module of this package and exposes `register(subparsers)`,
which adds its parser and sets `handler` to the function that runs it.

Exit codes: 0 success (for `forget`: the verification passed); 1 verification failed (`forget`);
2 bad request or argument, reported before anything is written; 3 I/O (read-only folder, full
disk) or internal error. 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__

EXIT_BAD_REQUEST, EXIT_IO = 2, 3

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
    except (ValueError, KeyError, FileNotFoundError, NotADirectoryError) as error:
        # User-facing errors (bad config, corpus, audio, checkpoint, name) carry a message that
        # names the culprit; a traceback would only bury it. SPEECH_UNLEARNING_DEBUG=1 shows it.
        if os.environ.get("SPEECH_UNLEARNING_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_REQUEST
    except OSError as error:
        # Read-only folder, full disk, permissions: not the request's fault, and not a failed check.
        if os.environ.get("SPEECH_UNLEARNING_DEBUG"):
            raise
        print(f"I/O error: {error}", file=sys.stderr)
        return EXIT_IO
    except Exception as error:  # noqa: BLE001 - the documented last exit code, with a one-line reason
        if os.environ.get("SPEECH_UNLEARNING_DEBUG"):
            raise
        print(f"internal error ({type(error).__name__}): {error} (SPEECH_UNLEARNING_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_IO


if __name__ == "__main__":
    sys.exit(main())
