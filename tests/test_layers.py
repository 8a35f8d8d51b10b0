"""The package layering (docs/architecture.md), read from the source's own imports.

``core`` imports no domain; the domains import only downward in ``LAYERS``; only the
composition root (``chorus``) knows every domain; no two top-level packages import each other,
directly or through others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lower layers first; a package may import its own layer's package and any lower layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("policies",),
    ("exercises", "reports_ml"),
    ("aggregate",),
    ("ingest",),
    ("chorus",),
)
PACKAGES = tuple(name for layer in LAYERS for name in layer)
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def imported_packages(path: Path) -> Iterator[tuple[str, int]]:
    """Top-level first-party packages imported by one file, with the line of each import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".", 1)[0]
            if top in RANK:
                yield top, node.lineno


def package_edges() -> dict[str, dict[str, list[str]]]:
    """package → imported package → the places (file:line) that import it."""
    edges: dict[str, dict[str, list[str]]] = {name: {} for name in PACKAGES}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported, line in imported_packages(path):
                if imported != package:
                    where = f"{path.relative_to(ROOT)}:{line}"
                    edges[package].setdefault(imported, []).append(where)
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_top_level_package_is_placed_in_a_layer() -> None:
    found = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in {"tests", "benchmarks"}
    }
    assert found == set(PACKAGES)


def test_core_imports_no_domain() -> None:
    assert package_edges()["core"] == {}


def test_packages_import_only_downward() -> None:
    upward = {
        f"{package} → {imported}": places
        for package, imports in package_edges().items()
        for imported, places in imports.items()
        if RANK[imported] >= RANK[package]
    }
    assert upward == {}


def test_no_cycle_between_top_level_packages() -> None:
    graph = {package: set(imports) for package, imports in package_edges().items()}
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_of_each_package_are_seen(package: str) -> None:
    """The reader really reads imports: every package but core imports something first-party."""
    edges = package_edges()[package]
    assert (package == "core") == (not edges)
