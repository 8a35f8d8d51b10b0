"""``chorus serve --workers 2``: /metrics sums every worker's counters, whichever answers.

The workers count into files of one private directory on tmpfs (mode 0700), which is gone once
the server has stopped.
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from core.auth import Role, create_key
from core.db import Database
from tests.e2e.conftest import ServerFactory
from tests.e2e.procs import ChorusProcess, descendants

pytestmark = pytest.mark.e2e

HEALTHZ_REQUESTS = 120


def _healthz_count(exposition: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "chorus_http_requests_total" and sample.labels["route"] == "/healthz"
    )


def _metrics_dir(server: ChorusProcess) -> Path:
    """The directory the workers were started with (from their environment)."""
    for pid in descendants(server.pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(entry.split(b"=", 1)[1].decode())
    raise AssertionError("no worker has PROMETHEUS_MULTIPROC_DIR")


def _processes_that_served_healthz(directory: Path) -> int:
    serving = 0
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
            if any(s.name == "chorus_http_requests_total" and s.labels["route"] == "/healthz"
                   and s.value > 0 for s in metric.samples):
                serving += 1
                break
    return serving


def _get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    # A fresh connection per request, so the kernel hands each to whichever worker accepts.
    with httpx.Client(timeout=10) as client:
        return client.get(url, headers=headers)


def test_two_workers_report_the_sum_and_leave_no_directory(
    chorus_server: ServerFactory, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'chorus.db'}"
    database = Database(database_url)
    database.upgrade()
    with database.session() as session:
        operator_key = create_key(session, role=Role.ADMIN, name="prometheus")
    database.dispose()
    server = chorus_server(
        database_url=database_url, storage_url=f"file://{tmp_path / 'blobs'}", workers=2
    )
    server.start()
    directory = _metrics_dir(server)
    shm = Path("/dev/shm")
    if shm.is_dir():
        assert directory.parent == shm
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _get(f"{server.url}/healthz"), range(HEALTHZ_REQUESTS)))
    assert [a.status_code for a in answers] == [200] * HEALTHZ_REQUESTS
    assert _processes_that_served_healthz(directory) == 2, "one worker served every request"

    headers = {"X-API-Key": operator_key}
    assert _get(f"{server.url}/metrics").status_code == 401
    with ThreadPoolExecutor(4) as pool:
        scrapes = list(pool.map(lambda _: _get(f"{server.url}/metrics", headers), range(12)))
    for scrape in scrapes:
        assert scrape.status_code == 200, scrape.text
        assert _healthz_count(scrape.text) == HEALTHZ_REQUESTS
        assert "_created" not in scrape.text

    server.stop()
    assert server.process is not None
    assert server.process.returncode == 0, server.log_tail()
    assert not directory.exists()
