"""The documentation site: `mkdocs build --strict` passes, and the generated reference covers
every `speech-unlearn` subcommand and every registered method.

The reference pages are generated at build time by `docs/hooks/reference.py` from the argparse
parser and the method registry; these tests load that module directly for the unit-level checks.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HOOK = PROJECT_ROOT / "docs" / "hooks" / "reference.py"


def load_hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hook():
    return load_hook()


@pytest.fixture(scope="module")
def parser(hook):
    from speech_unlearning.cli.main import build_parser

    return build_parser()


def walk_subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand parser at any depth, found independently of the generator."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.append(sub)
                found.extend(walk_subcommands(sub))
    return found


def top_level_names(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


# --------------------------------------------------------------------------------------------
# The build


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (it is in the dev extras: pip install -e '.[dev]')")
    pytest.importorskip("material", reason="mkdocs-material is not installed (it is in the dev extras)")
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT / "src"), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(PROJECT_ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return site


def test_mkdocs_build_strict_passes(built_site):
    assert (built_site / "index.html").is_file()
    for page in ("quick-start", "concepts", "how-to/deletion-request", "how-to/paper-protocol",
                 "how-to/add-a-method", "how-to/add-a-model", "BENCHMARKS", "RELIABILITY", "research"):
        assert (built_site / page / "index.html").is_file(), page


def test_built_site_has_a_page_per_subcommand(built_site, parser):
    names = top_level_names(parser)
    assert names, "the parser has no subcommands"
    index = (built_site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for name in names:
        page = built_site / "reference" / "cli" / name / "index.html"
        assert page.is_file(), f"no reference page for `speech-unlearn {name}`"
        assert f'href="{name}/"' in index, f"the CLI index does not link `speech-unlearn {name}`"
    for sub in walk_subcommands(parser):
        top = sub.prog.split()[1]
        text = (built_site / "reference" / "cli" / top / "index.html").read_text(encoding="utf-8")
        assert sub.prog in text, f"no section for `{sub.prog}`"


def test_built_site_lists_every_method(built_site, hook):
    from speech_unlearning.methods import method_names

    text = (built_site / "reference" / "methods" / "index.html").read_text(encoding="utf-8")
    for name in method_names():
        assert f'id="{hook._anchor(name)}"' in text, f"method {name!r} has no section"
        assert f"<code>{name}</code>" in text, f"method {name!r} missing"


# --------------------------------------------------------------------------------------------
# The generator, without MkDocs


def test_every_subcommand_has_a_generated_page(hook, parser):
    pages = hook.cli_pages(parser)
    assert hook.missing_cli_pages(parser, pages) == []
    for name in top_level_names(parser):
        assert hook.cli_page_path(name) in pages
    nav_pages = [next(iter(entry.values())) for entry in hook.cli_nav(parser)[1:]]
    assert nav_pages == [hook.cli_page_path(name) for name in top_level_names(parser)]


def test_a_subcommand_without_a_page_is_caught(hook, parser):
    pages = hook.cli_pages(parser)
    dropped = dict(pages)
    del dropped[hook.cli_page_path("forget")]
    assert hook.missing_cli_pages(parser, dropped) == ["speech-unlearn forget"]
    # a nested subcommand (corpus build) whose section is missing from its page
    nested = dict(pages)
    nested[hook.cli_page_path("corpus")] = nested[hook.cli_page_path("corpus")].replace(
        "# `speech-unlearn corpus build`", "# something else")
    assert hook.missing_cli_pages(parser, nested) == ["speech-unlearn corpus build"]


def test_the_build_refuses_a_missing_page(hook, monkeypatch):
    exceptions = pytest.importorskip("mkdocs.exceptions", reason="mkdocs is not installed (dev extras)")

    real = hook.generated_pages

    def without_predict(parser=None):
        pages = real(parser)
        del pages[hook.cli_page_path("predict")]
        return pages

    monkeypatch.setattr(hook, "generated_pages", without_predict)
    with pytest.raises(exceptions.PluginError, match="speech-unlearn predict"):
        hook.on_files(files=None, config=None)


def test_a_new_subcommand_gets_a_page_without_editing_the_docs(hook, parser):
    extended = argparse.ArgumentParser(prog="speech-unlearn")
    subparsers = extended.add_subparsers(dest="command")
    subparsers.add_parser("brand-new", help="a subcommand the docs have never heard of").add_argument("--flag")
    pages = hook.cli_pages(extended)
    assert hook.missing_cli_pages(extended, pages) == []
    page = pages[hook.cli_page_path("brand-new")]
    assert "# `speech-unlearn brand-new`" in page and "--flag" in page


def test_every_method_is_in_the_method_reference(hook):
    from speech_unlearning.config import describe_fields
    from speech_unlearning.methods import METHODS

    page = hook.method_page()
    for name in METHODS.names():
        method = METHODS.get(name)
        assert f"## `{name}`" in page, f"method {name!r} has no section"
        for field_name, *_ in describe_fields(method.config_class):
            assert f"| `{field_name}` |" in page
    assert "+superloss` {#superloss}" in page
