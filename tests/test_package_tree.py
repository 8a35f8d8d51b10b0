"""The layout of the tests: every folder of test code is a package, so that test modules of the
same name in two folders do not collide and helpers import as ``tests.<folder>.<module>``; a
``conftest.py`` holds only pytest fixtures and hooks, and what tests share otherwise (helpers,
classes, constants, type aliases) lives in plain modules that tests import."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _python_folders() -> set[Path]:
    return {path.parent for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts}


def _is_fixture(decorator: ast.expr) -> bool:
    """``@pytest.fixture``, ``@pytest.fixture(...)``, ``@fixture`` or ``@fixture(...)``."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Attribute):
        return target.attr == "fixture"
    return isinstance(target, ast.Name) and target.id == "fixture"


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def conftest_intruders(path: Path) -> list[str]:
    """What a conftest.py defines at module level beyond imports, fixtures and hooks
    (``pytest_*`` functions and the ``pytest_plugins`` list), as ``line: what``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    intruders: list[str] = []
    for index, node in enumerate(tree.body):
        if isinstance(node, ast.Import | ast.ImportFrom) or (index == 0 and _is_docstring(node)):
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("pytest_") or any(map(_is_fixture, node.decorator_list)):
                continue
            intruders.append(f"{node.lineno}: function {node.name}")
        elif isinstance(node, ast.Assign) and [
            target.id for target in node.targets if isinstance(target, ast.Name)
        ] == ["pytest_plugins"]:
            continue
        elif isinstance(node, ast.ClassDef):
            intruders.append(f"{node.lineno}: class {node.name}")
        else:
            intruders.append(f"{node.lineno}: {ast.unparse(node).splitlines()[0][:60]}")
    return intruders


def test_every_folder_of_tests_is_a_package() -> None:
    folders = _python_folders()
    assert TESTS / "aggregate" in folders
    missing = sorted(
        str(folder.relative_to(TESTS.parent))
        for folder in folders
        if not (folder / "__init__.py").is_file()
    )
    assert missing == []


def test_conftest_files_hold_only_fixtures_and_hooks() -> None:
    conftests = sorted(TESTS.rglob("conftest.py"))
    assert TESTS / "conftest.py" in conftests
    found = {
        str(path.relative_to(TESTS.parent)): intruders
        for path in conftests
        if (intruders := conftest_intruders(path))
    }
    assert found == {}, f"move these to a plain module that the tests import: {found}"


def test_no_test_imports_from_a_conftest() -> None:
    importing: list[str] = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or "", *(alias.name for alias in node.names)]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            if any(module.split(".")[-1] == "conftest" for module in modules):
                importing.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}")
    assert importing == [], "import shared helpers from their module, fixtures by argument"
