"""``chorus serve`` keeps two malloc arenas a process (``core.malloc``), or the operator's
``MALLOC_ARENA_MAX``; each case runs in a fresh interpreter, as the cap is per process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import os; from core.malloc import limit_malloc_arenas; "
    "print(limit_malloc_arenas(), os.environ['MALLOC_ARENA_MAX'])"
)
glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def _probe(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=base | env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@glibc
def test_the_cap_is_two_arenas_for_the_process_and_its_children() -> None:
    assert _probe() == "True 2"


@glibc
def test_an_operators_setting_is_kept() -> None:
    assert _probe(MALLOC_ARENA_MAX="4") == "True 4"


def test_a_setting_that_is_not_a_number_changes_nothing() -> None:
    assert _probe(MALLOC_ARENA_MAX="many") == "False many"
