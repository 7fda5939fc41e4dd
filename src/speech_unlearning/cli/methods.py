"""`speech-unlearn methods`: list every unlearning method with its defaults and their provenance.

    speech-unlearn methods            # one block per method: summary, then each setting
    speech-unlearn methods --names    # just the names accepted by --method (with +superloss ones)
    speech-unlearn methods --json     # machine-readable

Any setting can be changed with `speech-unlearn unlearn ... --set KEY=VALUE`.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "methods",
        help="list the unlearning methods and their default settings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--names", action="store_true", help="print only the method names --method accepts")
    output.add_argument("--json", action="store_true", help="print the listing as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..methods import describe_methods, method_names

    if args.names:
        print("\n".join(method_names(with_superloss=True)))
        return 0
    rows = describe_methods()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        print(format_method(row))
    return 0


def format_method(row: dict) -> str:
    """A readable block: name and summary, then `key = default  # provenance` per setting."""
    superloss = "  [+superloss available]" if row["superloss"] and not row["name"].startswith("<") else ""
    lines = [f"{row['name']}: {row['summary']}{superloss}"]
    if row.get("objective_reads"):  # the attacks deciding on these judge the method on its own target
        lines.append(f"    (its objective reads {', '.join(row['objective_reads'])})")
    width = max((len(key) for key in row["defaults"]), default=0)
    for key, default in row["defaults"].items():
        note = row["help"].get(key, "")
        lines.append(f"    {key:<{width}} = {default!s:<10}" + (f"  # {note}" if note else ""))
    return "\n".join(lines) + "\n"
