"""``chorus serve --workers 2``: /metrics sums every worker's counters, whichever answers, and
the workers share bucket keys, so the contribution cap and the distinct count hold across them.

The workers count into files of one private directory on tmpfs (mode 0700), which is gone once
the server has stopped.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from aggregate.tables import Bucket, PendingClip
from chorus.synthetic_voice import voiced_wav
from core.auth import Role, create_key
from core.db import Database
from ingest.consent import mint_token
from tests.consent import ConsentKeys
from tests.e2e.deployment import ServerFactory, prepare_database
from tests.e2e.procs import ChorusProcess, descendants

pytestmark = pytest.mark.e2e

HEALTHZ_REQUESTS = 120
HEALTHZ_ROUNDS = 5


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


def _processes_that_served(directory: Path, route: str) -> int:
    serving = 0
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
            if any(
                s.name == "chorus_http_requests_total"
                and s.labels["route"] == route
                and s.value > 0
                for s in metric.samples
            ):
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

    # Which worker accepts a connection is the kernel's choice: on a busy machine one worker
    # may take a whole round, so rounds go on (a bounded number) until both have served.
    sent = 0
    for _ in range(HEALTHZ_ROUNDS):
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda _: _get(f"{server.url}/healthz"), range(HEALTHZ_REQUESTS))
            )
        assert [a.status_code for a in answers] == [200] * HEALTHZ_REQUESTS
        sent += HEALTHZ_REQUESTS
        if _processes_that_served(directory, "/healthz") == 2:
            break
    assert _processes_that_served(directory, "/healthz") == 2, "one worker served every request"

    headers = {"X-API-Key": operator_key}
    assert _get(f"{server.url}/metrics").status_code == 401
    with ThreadPoolExecutor(4) as pool:
        scrapes = list(pool.map(lambda _: _get(f"{server.url}/metrics", headers), range(12)))
    for scrape in scrapes:
        assert scrape.status_code == 200, scrape.text
        assert _healthz_count(scrape.text) == sent
        assert "_created" not in scrape.text

    server.stop()
    assert server.process is not None
    assert server.process.returncode == 0, server.log_tail()
    assert not directory.exists()


LEARNERS = 6
TRIES_EACH = 4
MAX_ROUNDS = 10


def test_two_workers_share_bucket_keys_so_the_cap_and_the_count_hold(
    chorus_server: ServerFactory,
    tmp_path: Path,
    consent_keys: ConsentKeys,
) -> None:
    """Both API processes (and their upload workers) tag with the same in-memory key (P3, P6):
    each learner lands once in one bucket whichever process served them."""
    database_url = f"sqlite:///{tmp_path / 'chorus.db'}"
    prepare_database(database_url).dispose()
    server = chorus_server(
        database_url=database_url, storage_url=f"file://{tmp_path / 'blobs'}", workers=2
    )
    server.start()

    def upload(round_: int, attempt: int) -> int:
        learner = f"learner-{round_}-{attempt % LEARNERS}"
        # Each learner's own recording (a bucket takes a recording once), sent TRIES_EACH times.
        recording = voiced_wav(seed=100 * round_ + attempt % LEARNERS, seconds=0.8)
        token = mint_token(consent_keys.private_key, learner_id=learner)
        with httpx.Client(timeout=30) as client:  # a fresh connection: any worker may take it
            response = client.post(
                f"{server.url}/v1/clips",
                files=[
                    (
                        "metadata",
                        (None, json.dumps({"exercise_id": "digit-1"}), "application/json"),
                    ),
                    ("audio", ("clip.wav", recording, "audio/wav")),
                ],
                headers={"Authorization": f"Bearer {token}"},
            )
        return response.status_code

    # Rounds until both processes have served uploads: which process accepts a connection is
    # the kernel's choice, and one may take a whole round.
    rounds = 0
    while rounds < MAX_ROUNDS:
        with ThreadPoolExecutor(4) as pool:
            statuses = list(
                pool.map(functools.partial(upload, rounds), range(LEARNERS * TRIES_EACH))
            )
        rounds += 1
        assert sorted(statuses) == [201] * LEARNERS + [409] * (LEARNERS * (TRIES_EACH - 1))
        if _processes_that_served(_metrics_dir(server), "/v1/clips") == 2:
            break
    assert _processes_that_served(_metrics_dir(server), "/v1/clips") == 2, "one worker served all"

    database = Database(database_url)
    with database.session() as session:
        buckets = session.execute(sa.select(Bucket.id, Bucket.state)).all()
        tags = session.execute(
            sa.select(sa.func.count(sa.distinct(PendingClip.contributor_tag)))
        ).scalar_one()
    database.dispose()
    assert [state for _id, state in buckets] == ["open"]  # no process sealed another's bucket
    assert tags == LEARNERS * rounds
    server.stop()


def test_no_upload_waits_for_an_upload_worker_once_the_server_is_ready(
    chorus_server: ServerFactory,
    tmp_path: Path,
    consent_keys: ConsentKeys,
    fsdd_wavs: list[bytes],
) -> None:
    """Upload workers are started and warmed before ``/readyz`` answers: the first upload each
    worker serves takes as long as any later one (a cold worker adds ~100 ms)."""
    database_url = f"sqlite:///{tmp_path / 'chorus.db'}"
    prepare_database(database_url).dispose()
    server = chorus_server(
        database_url=database_url,
        storage_url=f"file://{tmp_path / 'blobs'}",
        decoder_workers="2",
    )
    server.start()

    with httpx.Client(timeout=30) as client:

        def timed_upload(number: int) -> float:
            token = mint_token(consent_keys.private_key, learner_id=f"learner-{number}")
            started = time.perf_counter()
            response = client.post(
                f"{server.url}/v1/clips",
                files=[
                    ("metadata", (None, json.dumps({"exercise_id": "digit-1"}), "text/plain")),
                    # A recording of its own: a bucket takes a recording once.
                    ("audio", ("clip.wav", voiced_wav(seed=number, seconds=0.8), "audio/wav")),
                ],
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 201, response.text
            return time.perf_counter() - started

        timed_upload(0)  # opens the exercise's bucket: a first upload's own work
        first_on_each_worker = [timed_upload(1), timed_upload(2)]
        later = [timed_upload(number) for number in range(3, 15)]
    typical = statistics.median(later)
    assert max(first_on_each_worker) < 3 * typical + 0.05, (first_on_each_worker, typical)
    server.stop()
