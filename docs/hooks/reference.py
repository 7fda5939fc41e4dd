"""MkDocs hook: generate the reference pages from the code, at build time.

- `reference/cli/index.md` and one page per `speech-unlearn` subcommand, walked from the
  argparse parser (`speech_unlearning.cli.main.build_parser`): the `--help` text as the
  command prints it, and a table of its arguments;
- `reference/methods.md`, from the method registry (`speech_unlearning.methods.METHODS`):
  each method's rule (its module docstring), its settings with type, default and the note that
  says where the default comes from, and which base config declares each setting.

Nothing here is written to `docs/`: the pages exist only in the build, so they follow the
parsers and the registry and cannot drift. The nav entry `Command line: reference/cli/index.md`
is expanded into one entry per subcommand, and the entry `research/README.md` is followed by every
note of `docs/research/`. The build fails (ConfigurationError) if a
subcommand of the parser has no page.

The functions below are plain and importable, so the tests can call them without MkDocs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import os
import sys
from pathlib import Path
from typing import Iterator

CLI_DIR = "reference/cli"
CLI_INDEX = f"{CLI_DIR}/index.md"
METHODS_PAGE = "reference/methods.md"
HELP_COLUMNS = "100"  # --help is wrapped at this width in the pages, whatever the terminal
GENERATED_NOTE = ("*Generated at build time from {source}; edit the code, not this page.*")


# --------------------------------------------------------------------------------------------
# The parser


SOURCE_ROOT = Path(__file__).resolve().parents[2] / "src"


def _ensure_importable() -> None:
    """Document the checkout the site is built from: its `src/` goes first on the path (a plain
    checkout builds without an install, and another installed copy is not picked up instead)."""
    if "speech_unlearning" not in sys.modules and (SOURCE_ROOT / "speech_unlearning").is_dir():
        if str(SOURCE_ROOT) not in sys.path:
            sys.path.insert(0, str(SOURCE_ROOT))


def build_parser() -> argparse.ArgumentParser:
    _ensure_importable()
    from speech_unlearning.cli.main import build_parser as build

    return build()


def _subparsers_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, one-line help) of each direct subcommand, in the order `--help` lists them."""
    action = _subparsers_action(parser)
    if action is None:
        return []
    helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
    return [(name, sub, helps.get(name, "")) for name, sub in action.choices.items()]


@contextlib.contextmanager
def _help_environment() -> Iterator[None]:
    """A fixed help width and no colour, so the pages do not depend on the terminal."""
    saved = {key: os.environ.get(key) for key in ("COLUMNS", "NO_COLOR")}
    os.environ["COLUMNS"] = HELP_COLUMNS
    os.environ["NO_COLOR"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --------------------------------------------------------------------------------------------
# Markdown helpers


def _cell(text: object) -> str:
    """Plain text for a Markdown table cell: no pipes, no line breaks, no raw HTML."""
    value = " ".join(str(text).split())
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: object) -> str:
    value = str(text).replace("|", "\\|")
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _fenced(text: str, language: str = "text") -> list[str]:
    fence = "````" if "```" in text else "```"
    return [f"{fence}{language}", text.rstrip("\n"), fence]


# --------------------------------------------------------------------------------------------
# CLI pages


def cli_page_path(name: str) -> str:
    return f"{CLI_DIR}/{name}.md"


def _expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    formatter = parser._get_formatter()
    try:
        return formatter._expand_help(action)
    except (AttributeError, KeyError, TypeError, ValueError):  # a private helper changed, or a stray %
        return action.help


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| Argument | Default | Description |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = ""
            if action.nargs != 0:
                metavar = action.metavar or action.dest.upper()
                if isinstance(metavar, tuple):
                    metavar = " ".join(metavar)
            names = ", ".join(_code(f"{option} {metavar}".strip()) for option in action.option_strings)
        else:
            names = _code(action.metavar or action.dest)
        default = action.default
        shown = "" if default in (None, argparse.SUPPRESS, False) or action.nargs == 0 else _code(default)
        description = _cell(_expanded_help(parser, action))
        if action.choices and not isinstance(action.choices, dict):
            description += (" " if description else "") + "Choices: " + ", ".join(_code(c) for c in action.choices) + "."
        if action.required:
            description = "**Required.** " + description
        rows.append(f"| {names} | {shown} | {description} |")
    return rows if len(rows) > 2 else []


def _command_section(parser: argparse.ArgumentParser, help_line: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{parser.prog}`", ""]
    if help_line:
        lines += [_cell(help_line[:1].upper() + help_line[1:]), ""]
    with _help_environment():
        lines += _fenced(parser.format_help()) + [""]
        rows = _argument_rows(parser)
    if rows:
        lines += ["Arguments:", "", *rows, ""]
    for name, sub, sub_help in subcommands(parser):
        lines += _command_section(sub, sub_help, level + 1)
    return lines


def cli_pages(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    """Markdown of the CLI reference: `{path under docs/: text}`, an index and one page per subcommand."""
    parser = parser or build_parser()
    note = GENERATED_NOTE.format(source="the argparse parser of `speech_unlearning.cli.main`")
    commands = subcommands(parser)
    index = ["# Command line", "", note, "",
             f"The command-line tool is `{parser.prog}`; every subcommand takes `--help`.", ""]
    with _help_environment():
        index += _fenced(parser.format_help()) + [""]
    index += ["| Command | What it does |", "|---|---|"]
    for name, _, help_line in commands:
        index.append(f"| [`{parser.prog} {name}`]({name}.md) | {_cell(help_line)} |")
    pages = {CLI_INDEX: "\n".join(index) + "\n"}
    for name, sub, help_line in commands:
        text = _command_section(sub, help_line, level=1)
        text[2:2] = [note, ""]
        pages[cli_page_path(name)] = "\n".join(text) + "\n"
    return pages


def missing_cli_pages(parser: argparse.ArgumentParser, pages: dict[str, str]) -> list[str]:
    """Subcommands of `parser` (at any depth) without their reference: a page for each top-level
    one, and a section (its full `prog` as a heading) on that page for each nested one."""
    missing = []
    for name, sub, _ in subcommands(parser):
        page = pages.get(cli_page_path(name))
        if page is None:
            missing.append(sub.prog)
            continue
        stack = [sub]
        while stack:
            current = stack.pop()
            if f"# `{current.prog}`" not in page:
                missing.append(current.prog)
            stack.extend(nested for _, nested, _ in subcommands(current))
    return missing


def cli_nav(parser: argparse.ArgumentParser) -> list:
    """The nav of the CLI reference: the index, then one entry per subcommand."""
    return [CLI_INDEX] + [{name: cli_page_path(name)} for name, _, _ in subcommands(parser)]


# --------------------------------------------------------------------------------------------
# Method page


def _declared_in(config_class: type, field_name: str) -> type:
    """The class of `config_class`'s MRO whose body sets `field_name` last (its default's source)."""
    for klass in config_class.__mro__:
        if field_name in vars(klass).get("__annotations__", {}):
            return klass
    return config_class


def _source_path(obj: object) -> str:
    try:
        path = Path(inspect.getfile(obj)).resolve()
    except TypeError:
        return ""
    parts = path.parts
    if "speech_unlearning" in parts:
        return "src/" + "/".join(parts[parts.index("speech_unlearning"):])
    return path.name


def _settings_table(config_class: type) -> list[str]:
    from speech_unlearning.config import describe_fields

    rows = ["| Setting | Type | Default | Where the default comes from | Declared in |", "|---|---|---|---|---|"]
    for name, type_name, default, help_text in describe_fields(config_class):
        owner = _declared_in(config_class, name)
        rows.append(f"| `{name}` | {_cell(type_name)} | {_code(default)} | {_cell(help_text)} | "
                    f"`{owner.__name__}` |")
    return rows


def _docstring(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else ""


def method_page() -> str:
    """Markdown of the method reference, from the registry."""
    _ensure_importable()
    from speech_unlearning.methods import METHODS, SUPERLOSS_SUFFIX, SuperLossConfig

    note = GENERATED_NOTE.format(source="the method registry, `speech_unlearning.methods.METHODS`")
    names = METHODS.names()
    lines = [
        "# Methods", "", note, "",
        "Pick a method with `--method NAME` (`unlearn`, `forget`) or `--set methods=A,B` (`bench`), and "
        "change any setting with `--set KEY=VALUE`. `speech-unlearn methods` prints the same listing in "
        "the terminal. Each section gives the method's rule as its source file states it, then every "
        "setting with its default and the note that says where that default comes from.", "",
        "| Method | Summary | `+superloss` |", "|---|---|---|",
    ]
    for name in names:
        method = METHODS.get(name)
        lines.append(f"| [`{name}`](#{_anchor(name)}) | {_cell(method.summary)} | "
                     f"{'yes' if method.loss_roles else 'no'} |")
    lines.append("")
    for name in names:
        method = METHODS.get(name)
        module = sys.modules[method.__module__]
        lines += [f"## `{name}` {{#{_anchor(name)}}}", "", _cell(method.summary), ""]
        facts = [f"- Source: `{_source_path(method)}`, class `{method.__name__}`, "
                 f"settings `{method.config_class.__name__}`."]
        facts.append(f"- `{name}{SUPERLOSS_SUFFIX}`: " + ("available." if method.loss_roles else
                     "not available (no per-sample training loss)."))
        reads = ", ".join(f"`{quantity}`" for quantity in method.objective_reads)
        facts.append(f"- Its objective reads: {reads or 'none of the quantities the attacks decide on'}.")
        lines += facts + [""]
        rule = _docstring(module)
        if rule:
            lines += ["**Rule and provenance** (module docstring):", "", *_fenced(rule), ""]
        lines += ["**Settings:**", "", *_settings_table(method.config_class), ""]
    lines += [f"## `<method>{SUPERLOSS_SUFFIX}` {{#superloss}}", "",
              "SuperLoss per-sample re-weighting on any method marked `+superloss: yes` above; its settings "
              "are added to the method's.", "",
              f"- Source: `{_source_path(SuperLossConfig)}`, settings `{SuperLossConfig.__name__}`.", ""]
    rule = _docstring(sys.modules[SuperLossConfig.__module__])
    if rule:
        lines += ["**Rule and provenance** (module docstring):", "", *_fenced(rule), ""]
    lines += ["**Settings:**", "", *_settings_table(SuperLossConfig), ""]
    return "\n".join(lines) + "\n"


def _anchor(name: str) -> str:
    return "method-" + "".join(c if c.isalnum() else "-" for c in name.lower())


def generated_pages(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    parser = parser or build_parser()
    return {**cli_pages(parser), METHODS_PAGE: method_page()}


# --------------------------------------------------------------------------------------------
# MkDocs events


def _expand_nav(nav: list, parser: argparse.ArgumentParser) -> bool:
    """Replace the nav entry pointing at the CLI index with the generated list, in place."""
    for position, item in enumerate(nav):
        if isinstance(item, dict):
            for title, value in item.items():
                if value == CLI_INDEX:
                    item[title] = cli_nav(parser)
                    return True
                if isinstance(value, list) and _expand_nav(value, parser):
                    return True
        elif item == CLI_INDEX:
            nav[position] = {"Command line": cli_nav(parser)}
            return True
    return False


_PARSER: argparse.ArgumentParser | None = None


def _parser() -> argparse.ArgumentParser:
    global _PARSER
    if _PARSER is None:
        _PARSER = build_parser()
    return _PARSER


RESEARCH_INDEX = "research/README.md"


def _add_research_notes(nav: list, docs_dir: Path) -> bool:
    """After the nav entry `research/README.md`, list every dated note of `docs/research/` (oldest
    first), so a new note needs no nav edit."""
    for item in nav:
        values = item.values() if isinstance(item, dict) else []
        for value in values:
            if isinstance(value, list):
                if RESEARCH_INDEX in value:
                    listed = {entry for entry in value if isinstance(entry, str)}
                    notes = sorted(p.relative_to(docs_dir).as_posix() for p in (docs_dir / "research").glob("*.md"))
                    value.extend(note for note in notes if note not in listed)
                    return True
                if _add_research_notes(value, docs_dir):
                    return True
    return False


def on_config(config):
    if config.nav:
        _expand_nav(config.nav, _parser())
        _add_research_notes(config.nav, Path(config.docs_dir))
    return config


def on_files(files, config):
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    parser = _parser()
    pages = generated_pages(parser)
    missing = missing_cli_pages(parser, pages)
    if missing:
        raise PluginError(f"CLI reference: no generated page for {', '.join(missing)}")
    for path, text in pages.items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=text))
    return files
