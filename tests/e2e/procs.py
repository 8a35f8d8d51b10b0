"""``chorus serve`` processes for end-to-end tests: start on a free loopback port, kill.

Each process is started by its own pid and stopped by that pid only. Its output goes to a log
file next to the test's temporary files, which a failing test quotes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.keys import TEST_KEY_STORE_URL

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` in KiB, from /proc (no psutil)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, children first."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name may hold spaces; the fields after its ')' do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


class ChorusProcess:
    """One ``chorus serve`` on loopback with the given ``CHORUS_*`` environment."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        port: int | None = None,
        workers: int = 1,
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.port = port or free_port()
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, timeout_s: float = 60.0) -> ChorusProcess:
        """Start and wait until ``/readyz`` answers 200."""
        self.launch()
        self.wait_ready(timeout_s=timeout_s)
        return self

    def launch(self) -> None:
        """Start the process without waiting (several replicas may then start together)."""
        # CHORUS_* of the calling shell must not leak into the server under test.
        base = {k: v for k, v in os.environ.items() if not k.startswith("CHORUS_")}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chorus",
                    "serve",
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                cwd=REPO_ROOT,
                env={
                    **base,
                    "CHORUS_LOG_LEVEL": "WARNING",
                    # The run's own key store, so the test reads the keys the server made.
                    "CHORUS_KEY_STORE_URL": os.environ.get(
                        "CHORUS_KEY_STORE_URL", TEST_KEY_STORE_URL
                    ),
                    **self.env,
                },
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, *, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"chorus serve exited; its log:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"chorus serve was not ready in {timeout_s:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the API process, as a crash or an OOM kill would.

        Its helpers end by themselves (``core.lifeline``); any left, say by a test that stopped
        the watch, are killed afterwards, by the pids they had.
        """
        if not self.running:
            return
        assert self.process is not None
        left_behind = descendants(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        for pid in left_behind:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self, *, grace_s: float = 15.0) -> None:
        """SIGTERM (uvicorn's graceful shutdown), SIGKILL after ``grace_s``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> ChorusProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
