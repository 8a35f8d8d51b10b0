"""The README's shell examples run as written: every variable a block uses is set before, in
that block (a reader pastes one block at a time)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)
_USE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_SET = re.compile(r"(?:^|export |;\s*)([A-Za-z_][A-Za-z0-9_]*)=")
_ENVIRONMENT = {"PWD", "HOME"}


def test_every_variable_a_shell_example_uses_is_set_before_in_it() -> None:
    blocks = _BLOCK.findall(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3
    unset: list[str] = []
    for block in blocks:
        known = set(_ENVIRONMENT)
        for line in block.splitlines():
            code = line.split("  #", 1)[0]
            unset.extend(
                f"{name} in: {line.strip()}" for name in _USE.findall(code) if name not in known
            )
            known.update(_SET.findall(code.strip()))
    assert unset == []


def test_the_quick_start_shows_the_measured_install_sizes() -> None:
    text = README.read_text(encoding="utf-8")
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "requirements-runtime.lock" in quick_start
    assert re.search(r"`make run`: runtime install \| \d+ min \d+ s \| \d+ MB", quick_start)
    assert re.search(r"`make test`: the rest into `\.venv` \| \d+ min \d+ s", quick_start)
