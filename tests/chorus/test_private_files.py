"""The ``chorus`` command makes every file of its process and its children private (P3)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    old = os.umask(0o022)  # as a default login shell would leave it
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.umask(old)


def test_chorus_keygen_writes_private_keys_under_an_open_umask(tmp_path: Path) -> None:
    result = _run(
        """
        import sys
        from chorus.cli import main
        sys.argv = ["chorus", "consent", "keygen", "--out", "keys"]
        main()
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    keys = tmp_path / "keys"
    assert keys.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in keys.iterdir()} == {
        "private.pem": 0o600,
        "public.pem": 0o600,
    }


def test_worker_and_job_processes_inherit_the_private_umask(tmp_path: Path) -> None:
    # Upload workers come from a forkserver, the job process is spawned: both fork + exec.
    result = _run(
        """
        import multiprocessing, os, sys
        from chorus import cli

        def report() -> None:
            masks = []
            for method in ("forkserver", "spawn"):
                with multiprocessing.get_context(method).Pool(1) as pool:
                    # os.umask returns the mask the child had: the one it inherited.
                    masks.append(pool.apply(os.umask, (0o077,)))
            print(",".join(oct(mask) for mask in masks))

        if __name__ == "__main__":
            cli.app.command("umask-probe")(report)
            sys.argv = ["chorus", "umask-probe"]
            cli.main()
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0o77,0o77"
