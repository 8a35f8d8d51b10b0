"""``chorus serve`` starts its upload workers with two malloc arenas each (``core.malloc``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.deployment import ServerFactory, prepare_database
from tests.e2e.procs import descendants

pytestmark = pytest.mark.e2e


def test_serve_starts_its_upload_workers_with_the_cap(
    chorus_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    database_url = f"sqlite:///{tmp_path / 'chorus.db'}"
    prepare_database(database_url).dispose()
    server = chorus_server(
        database_url=database_url,
        storage_url=f"file://{tmp_path / 'blobs'}",
        scheduler_enabled="false",
    )
    server.start()
    try:
        workers = descendants(server.pid)
        assert workers
        for pid in workers:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert b"MALLOC_ARENA_MAX=2" in environ
    finally:
        server.stop()
