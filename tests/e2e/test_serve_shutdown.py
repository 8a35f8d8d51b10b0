"""``chorus serve`` stops cleanly: a SIGTERM ends it (uvicorn shuts down, then ends by the signal
it caught) and leaves no interprocess
resource behind for Python's resource tracker to report (it warns of "leaked semaphore
objects" when a process pool's queues were never closed)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.deployment import ServerFactory, prepare_database

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("scheduler", ["true", "false"])
def test_a_stopped_server_leaks_nothing(
    chorus_server: ServerFactory, tmp_path: Path, scheduler: str
) -> None:
    database_url = f"sqlite:///{tmp_path / 'chorus.db'}"
    prepare_database(database_url).dispose()
    server = chorus_server(
        database_url=database_url,
        storage_url=f"file://{tmp_path / 'blobs'}",
        scheduler_enabled=scheduler,
    )
    server.start()
    server.stop()

    assert server.process is not None
    assert server.process.returncode in (0, -signal.SIGTERM), server.log_tail()
    log = server.log_tail(100_000)
    assert "leaked" not in log
    assert "resource_tracker" not in log
