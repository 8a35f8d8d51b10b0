"""Every test folder is a package, so that test modules of the same name in two folders do not
collide and helpers import as ``tests.<folder>.<module>``."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_every_folder_of_tests_is_a_package() -> None:
    folders = {path.parent for path in TESTS.rglob("test_*.py")}
    assert TESTS / "aggregate" in folders
    missing = sorted(
        str(folder.relative_to(TESTS.parent))
        for folder in folders
        if not (folder / "__init__.py").is_file()
    )
    assert missing == []
