"""core.metrics: the exposition has no creation times; the multiprocess directory is private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from core.metrics import MULTIPROC_DIR_ENV, counter, multiprocess_metrics_dir, render_metrics


def test_exposition_has_no_creation_time() -> None:
    seen = counter("chorus_test_exposition_events", "Events of this test", ["kind"])
    seen.labels(kind="one").inc()
    body, content_type = render_metrics()
    assert content_type.startswith("text/plain")
    assert b'chorus_test_exposition_events_total{kind="one"} 1.0' in body
    assert b"_created" not in body


def test_multiprocess_directory_is_private_on_tmpfs_and_removed() -> None:
    before = os.environ.get(MULTIPROC_DIR_ENV)
    with multiprocess_metrics_dir() as directory:
        assert os.environ[MULTIPROC_DIR_ENV] == str(directory)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert list(directory.iterdir()) == []
        if Path("/dev/shm").is_dir():
            assert directory.parent == Path("/dev/shm")
        (directory / "counter_1.db").write_bytes(b"")
    assert not directory.exists()
    assert os.environ.get(MULTIPROC_DIR_ENV) == before
