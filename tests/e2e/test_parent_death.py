"""Every process a ``chorus serve`` starts (upload workers, their forkserver, the job process,
the resource tracker, the workers of ``--workers 2``) ends within seconds of a SIGKILL of the
process that was started, which runs no shutdown code."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.lifeline import exit_when_gone
from tests.consent import ConsentKeys
from tests.e2e.procs import ChorusProcess, descendants

pytestmark = pytest.mark.e2e
GONE_WITHIN_S = 5.0


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_of_serve_takes_every_descendant_down(
    tmp_path: Path, consent_keys: ConsentKeys, workers: int
) -> None:
    env = {
        "CHORUS_DATABASE_URL": f"sqlite:///{tmp_path / 'chorus.db'}",
        "CHORUS_STORAGE_URL": f"file://{tmp_path / 'blobs'}",
        "CHORUS_POLICY": "demo",
        "CHORUS_CONSENT_PUBLIC_KEY": consent_keys.public_pem,
        "CHORUS_SCHEDULER_ENABLED": "true",
        "CHORUS_RELEASE_INTERVAL": "1",  # the job process starts within a second
        "CHORUS_DECODER_WORKERS": "1",
        "CHORUS_MODEL_DIR": str(tmp_path / "models"),
    }
    server = ChorusProcess(env, tmp_path / "serve.log", workers=workers)
    server.start()
    try:
        kinds = ("forkserver", "resource_tracker", "spawn_main")
        # One resource tracker; per API process its forkserver, its upload worker and its job
        # process; with --workers 2 the two API processes themselves too.
        expected = 4 if workers == 1 else 1 + 4 * workers

        def helpers_started() -> bool:
            commands = [_command(pid) for pid in descendants(server.pid)]
            kinds_seen = all(any(kind in c for c in commands) for kind in kinds)
            return kinds_seen and len(commands) >= expected

        assert _wait(helpers_started, 40), [_command(p) for p in descendants(server.pid)]
        children = descendants(server.pid)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        assert _wait(lambda: not any(_alive(pid) for pid in children), GONE_WITHIN_S), [
            _command(pid) for pid in children if _alive(pid)
        ]
    finally:
        for pid in descendants(server.pid) if server.running else []:
            os.kill(pid, signal.SIGKILL)
        server.kill()


def test_exit_when_gone_follows_a_process_not_a_thread(tmp_path: Path) -> None:
    # The watched process is a short sleep; the watcher a child that would sleep a minute.
    import subprocess
    import sys

    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from core.lifeline import exit_when_gone; "
            f"exit_when_gone({watched.pid}); time.sleep(60)",
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        watched.wait(10)
        assert watcher.wait(5) == 1
    finally:
        watcher.kill()
    with pytest.raises(ValueError, match="itself"):
        exit_when_gone(os.getpid())
