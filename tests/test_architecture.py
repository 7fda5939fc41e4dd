"""The package's shape: layers import only downwards, and no module imports itself in a circle.

Imports are read from the source (every `import` and `from ... import`, at module level or
inside functions, except those under `if TYPE_CHECKING:`), so a circle hidden behind a lazy
import inside a function still counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "speech_unlearning"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE
# Bottom to top; a module may import from its own layer or any layer below it.
LAYERS = ("config", "io", "registry", "data", "models", "training", "methods", "evaluation",
          "forgetting", "experiments", "cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _import_nodes(tree: ast.AST):
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking_block(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, node: ast.ImportFrom) -> str:
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_package else base[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


def imports_of(module: str) -> set[str]:
    """The project modules `module` imports (a `from package import name` counts the submodule
    `package.name` when there is one, else the package itself)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
            continue
        target = _resolve(module, node)
        if target not in MODULES:
            continue
        submodules = {f"{target}.{alias.name}" for alias in node.names} & MODULES.keys()
        found.update(submodules)
        if len(submodules) < len(node.names):
            found.add(target)
    found.discard(module)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_own_layer_or_those_below(module):
    layer = layer_of(module)
    if layer is None:
        return
    upward = sorted(target for target in imports_of(module)
                    if layer_of(target) is not None and LAYERS.index(layer_of(target)) > LAYERS.index(layer))
    assert not upward, f"{module} (layer {layer}) imports from layers above it: {upward}"


def test_every_layer_is_listed():
    assert {layer_of(module) for module in MODULES} - {None} <= set(LAYERS)


def _find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (circle := visit(target)):
                return circle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def test_no_module_imports_itself_in_a_circle():
    # A package's __init__ importing its own submodules is how registries fill; a submodule
    # importing its package's __init__ back is the circle this looks for.
    graph = {module: imports_of(module) for module in MODULES}
    circle = _find_circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_circle_finder_finds_a_planted_circle():
    assert _find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_circle({"a": {"b"}, "b": set()}) is None
