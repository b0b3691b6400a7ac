"""The import graph of hmer's own modules has no cycles; the light modules import without torch.

The graph is read from the source with ``ast`` (nothing is imported), one node per module under
``hmer/``. An edge ``a -> b`` is an ``import`` in ``a`` that names ``b``: ``from hmer.x import y``
names ``hmer.x.y`` when that is a module, else ``hmer.x``; relative imports are resolved. The
packages above a named module are not edges (Python runs their ``__init__`` first, but a package
importing its own submodules would otherwise always be a cycle). Imports under
``if TYPE_CHECKING:`` never run and are not edges.

Two kinds of edges: **module-level** ones run on import; **in-function** ones run on the first
call (lazy imports, kept to spare light callers torch or timm). Both count for the cycle check:
a lazy import that closes a cycle is still a cycle (module A needs B needs A: neither can be
understood, tested or moved alone), it only fails later and more rarely.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules(root: Path = ROOT, package: str = "hmer") -> dict[str, Path]:
    """Every module of ``package`` (a folder under ``root``): dotted name -> source file."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if "assets" not in parts:
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """``(import statement, inside a function?)`` for every import that can run."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # only the else branch ever runs
                yield from _imports(ast.Module(body=[child], type_ignores=[]), in_function)
        else:
            nested = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from _imports(node, nested)


def _targets(node: ast.stmt, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The hmer modules that one import statement in module ``name`` names."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        here = name.split(".") if is_package else name.split(".")[:-1]
        base_parts = here[: len(here) - (node.level - 1)]
        base = ".".join([*base_parts, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    found = set()
    for alias in node.names:
        if f"{base}.{alias.name}" in known:
            found.add(f"{base}.{alias.name}")
        elif base in known:
            found.add(base)
    return found


def import_graph(
    root: Path = ROOT, package: str = "hmer"
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(module-level edges, in-function edges)`` between the package's modules, self-edges
    dropped."""
    paths = modules(root, package)
    known = set(paths)
    top: dict[str, set[str]] = {name: set() for name in paths}
    lazy: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, in_function in _imports(tree):
            targets = _targets(node, name, path.name == "__init__.py", known) - {name}
            (lazy if in_function else top)[name] |= targets
    return top, lazy


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component that has one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, set(component)) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first search)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & component):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if succ not in parents:
                    parents[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle in the component {sorted(component)}")


def _describe(cycles: list[list[str]]) -> str:
    return "import cycles:\n" + "\n".join("  " + " -> ".join(cycle) for cycle in cycles)


def test_the_graph_reader_sees_every_kind_of_import(tmp_path):
    sources = {
        "pkg/__init__.py": "from . import a\n",
        "pkg/a.py": "import pkg.b\nfrom pkg.sub import c\n",
        "pkg/b.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg import a\n"
            "def later():\n    from .sub.c import name\n"
        ),
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from .. import b\nfrom ..sub import __name__ as name\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    top, lazy = import_graph(tmp_path, "pkg")
    assert top == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b", "pkg.sub.c"},
        "pkg.b": set(),  # the TYPE_CHECKING import never runs
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.b", "pkg.sub"},
    }
    assert lazy["pkg.b"] == {"pkg.sub.c"} and not lazy["pkg.a"]
    assert find_cycles(top) == []
    assert find_cycles({n: top[n] | lazy[n] for n in top}) == [["pkg.b", "pkg.sub.c", "pkg.b"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle_at_module_level():
    top, _ = import_graph()
    cycles = find_cycles(top)
    assert not cycles, _describe(cycles)


def test_no_import_cycle_counting_imports_inside_functions():
    top, lazy = import_graph()
    graph = {name: top[name] | lazy[name] for name in top}
    cycles = find_cycles(graph)
    assert not cycles, _describe(cycles)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_inference_and_search_never_reach_the_training_engine():
    """Layering: what users run to read formulas (hmer.runtime) and the search it uses never
    import hmer.engine, not even lazily."""
    top, lazy = import_graph()
    graph = {name: top[name] | lazy[name] for name in top}
    for name in graph:
        if name.startswith(("hmer.runtime", "hmer.search")):
            engine = sorted(m for m in _reachable(graph, name) if m.startswith("hmer.engine"))
            assert not engine, f"{name} reaches {engine}"


#: Modules that the light paths (config files, data tools, the predict CLI's ONNX route, model
#: cards, scoring) import: none may pull in torch, timm or torchvision.
LIGHT_MODULES = (
    "hmer.config",
    "hmer.data.vocab",
    "hmer.data.preprocess",
    "hmer.data.inkml",
    "hmer.data.latex",
    "hmer.io",
    "hmer.card",
    "hmer.metrics",
    "hmer.data.batching",
    "hmer.search",
    "hmer.search.onnx_backend",
    "hmer.runtime.inputs",
    "hmer.runtime.reading",
    "hmer.runtime.exports",
    "hmer.runtime.onnx",
    "hmer.cli.predict",
    "hmer.serve",
)

_BLOCKED_IMPORT = """
import importlib, sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"torch", "timm", "torchvision"}:
            raise ImportError(f"{name} is blocked: this module must import without it")
        return None

sys.meta_path.insert(0, Blocker())
importlib.import_module(sys.argv[1])
"""


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_module_imports_without_torch(module):
    # A fresh interpreter: this one has torch loaded already.
    result = subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORT, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
