"""The package's architecture: subpackages by role, imports in one direction only, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "src" / "rnnlab"

# Lower layers never import higher ones; modules of one layer may import each other (without cycles).
LAYERS = [
    {"rnnlab.errors", "rnnlab.console", "rnnlab.budget"},
    {"rnnlab.registry", "rnnlab.devices"},
    {"rnnlab.cells"},
    {"rnnlab.data"},
    {"rnnlab.models"},
    {"rnnlab.callbacks"},
    {"rnnlab.runs"},
    {"rnnlab.sweep"},
    {"rnnlab.app"},
    {"rnnlab.report"},
    {"rnnlab.study"},
    {"rnnlab.cli"},  # the `rnnlab` dispatcher: a command of any package can join it
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every rnnlab module ``path`` imports, at any depth (lazy imports in functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnlab"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("rnnlab"))
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    graph = {}
    for name, path in paths.items():
        # A package's __init__ re-exporting its own modules is not a dependency of those modules on it.
        graph[name] = {m for m in imported_modules(path, known) if m != name and m in known}
    return graph


def layer_of(module: str) -> int:
    if module == "rnnlab":
        return -1
    top = ".".join(module.split(".")[:2])
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_every_module_belongs_to_a_layer():
    for module in import_graph():
        layer_of(module)  # StopIteration names a module outside the layers


def test_imports_go_one_way():
    wrong = [
        f"{module} imports {dependency}"
        for module, dependencies in import_graph().items()
        for dependency in dependencies
        if layer_of(dependency) > layer_of(module)
    ]
    assert not wrong, wrong


def test_no_import_cycle():
    graph = import_graph()
    # A package importing its submodules (``__init__`` re-exports) and a submodule importing a sibling through
    # the package are the same edge seen from two sides; count only module -> module edges between files.
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):  # a package's own submodules
                continue
            if state.get(nxt) == 1:
                cycle.extend([*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*stack, nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if state.get(start) is None and visit(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    fake = {"rnnlab.a": {"rnnlab.b"}, "rnnlab.b": {"rnnlab.a"}}
    monkeypatch.setattr(__import__(__name__), "import_graph", lambda: fake)
    try:
        test_no_import_cycle()
    except AssertionError as error:
        assert "rnnlab.a -> rnnlab.b -> rnnlab.a" in str(error)
    else:
        raise AssertionError("a two-module cycle was not found")


def test_every_subpackage_says_what_it_holds_and_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc or "may import" in doc, init


# One idea per file, a function one screen: beyond these a file or function is split (docs/development.md).
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60


def test_no_source_file_or_function_is_too_long():
    too_long = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(ROOT)
        if text.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, f"over {MAX_FILE_LINES} lines a file or {MAX_FUNCTION_LINES} a function: {too_long}"
