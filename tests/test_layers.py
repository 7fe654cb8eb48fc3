"""The layout's rules, read from the source: which package may import which, and no
import cycles between modules (``TYPE_CHECKING`` and function-level imports count).

    duralog (the face, the CLI) <-> console (the web console, in the face: it serves
      |                                   what the CLI's commands compute)
      -> patterns (DAG, saga, breaker...)   observe (subscribe, metrics, logger)
        -> engine (the runtime)
          -> replay (the pure core)
            -> store (the log)
    duralog.errors: imported by every layer, imports none of them
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: folder -> its import name (pyproject.toml maps the folders into ``duralog``)
FOLDERS = {
    "duralog": "duralog",
    "console": "duralog.console",
    "engine": "duralog.engine",
    "patterns": "duralog.patterns",
    "observe": "duralog.observe",
    "replay": "duralog.replay",
    "store": "duralog.store",
}
FACE = "duralog"
ERRORS = "duralog.errors"
#: package -> the packages it may import (``duralog.errors`` always; its own always)
ALLOWED = {
    "duralog": {"console", "engine", "patterns", "observe", "replay", "store"},
    "console": {"duralog", "engine", "patterns", "observe", "replay", "store"},
    "patterns": {"engine", "replay", "store"},
    "observe": {"engine", "replay", "store"},
    "engine": {"replay", "store"},
    "replay": {"store"},
    "store": set(),
}


def modules() -> dict[str, Path]:
    """Every module of the package, by its import name."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[int, str]]:
    """The modules of ours that ``name`` imports (anywhere in it), with the line."""
    return sorted(set(_imports(name, path, known)))


def _imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[int, str]]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # ``from duralog.engine import hooks``: a module
                if f"{target}.{alias.name}" in known:
                    yield node.lineno, f"{target}.{alias.name}"
                elif target in known:
                    yield node.lineno, target


def room(module: str) -> str:
    """The package a module belongs to (``errors`` for ``duralog.errors``)."""
    if module == ERRORS:
        return "errors"
    for folder, package in FOLDERS.items():
        if folder != FACE and (module == package or module.startswith(package + ".")):
            return folder
    return FACE


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {target for _, target in imports(name, path, known) if target != name}
        for name, path in known.items()
    }


def test_imports_point_down() -> None:
    known = modules()
    wrong = []
    for name, path in known.items():
        own = room(name)
        for line, target in imports(name, path, known):
            other = room(target)
            if other == own or other == "errors":
                continue
            if own == "errors" or other not in ALLOWED[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {own}/ imports {target}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def cycles(edges: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    # TYPE_CHECKING imports count: a cycle through one still ties the modules together.
    found = sorted(cycles(graph()))
    assert not found, "import cycles between modules:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == {("a", "b", "c")}
    assert cycles({"a": {"b"}, "b": set()}) == set()


def test_the_import_reader_sees_every_kind_of_import() -> None:
    known = modules()
    worker = known["duralog.engine.worker"]
    found = {target for _, target in imports("duralog.engine.worker", worker, known)}
    assert "duralog.engine.hooks" in found  # from .hooks import ...
    assert "duralog.store.base" in found  # from duralog.store.base import ...
    assert "duralog.errors" in found
