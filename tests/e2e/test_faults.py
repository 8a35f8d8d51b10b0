"""Faults under upload load: the store down, database connections killed, a replica killed.

In every case a client sees either 201 or a 503 with a stable code, never a 500; every 201 is
durable (its pending row and its object exist); and the service recovers by itself.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from aggregate.buckets import current_open_bucket
from aggregate.tables import PendingClip
from chorus.devservers import SeaweedServer
from core.db import Database
from core.errors import DatabaseUnavailable
from core.storage import FileBlobStore, open_store
from ingest.audio import sanitize_audio
from ingest.consent import Consent
from ingest.jobs import OrphanSweeper
from ingest.service import audio_limits, store_clip
from policies.policy import load_policy
from tests.consent import ConsentKeys
from tests.e2e.deployment import ServerFactory
from tests.e2e.load import (
    Answer,
    UploadLoad,
    acknowledged,
    assert_every_ack_pending_and_stored,
    outcomes,
    take_census,
)
from tests.keys import keys_for

pytestmark = pytest.mark.e2e


def _between(answers: list[Answer], start: float, end: float) -> list[Answer]:
    """Uploads sent at ``start`` or later and answered by ``end``."""
    return [a for a in answers if start <= a.sent and a.at <= end]


def _wait_ready(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the service did not become ready again"
        time.sleep(0.2)


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[SeaweedServer]:
    """A SeaweedFS of this test alone, so stopping it disturbs no other test."""
    with SeaweedServer(tmp_path / "seaweed") as server:
        yield server


def test_store_down_and_back_answers_503_and_loses_nothing(
    chorus_server: ServerFactory,
    own_seaweed: SeaweedServer,
    fresh_postgres_url: str,
    e2e_database: Database,
    fsdd_wavs: list[bytes],
    consent_keys: ConsentKeys,
) -> None:
    storage_url = own_seaweed.storage_url("chorus-faults")
    database = e2e_database
    server = chorus_server(database_url=fresh_postgres_url, storage_url=storage_url).start()
    load = UploadLoad([server.url], fsdd_wavs, consent_keys, threads=4, seed=2).start()

    time.sleep(3)
    down_at = time.monotonic()
    own_seaweed.stop()
    time.sleep(2)
    assert httpx.get(f"{server.url}/readyz", timeout=30).json()["code"] == "storage_unavailable"
    time.sleep(3)
    up_at = time.monotonic()
    own_seaweed.start()
    _wait_ready(server.url)
    recovered_at = time.monotonic()
    time.sleep(3)
    answers = load.stop()

    seen = outcomes(answers)
    print("store down and back:", dict(seen))
    assert set(seen) <= {(201, ""), (503, "storage_unavailable")}, seen
    outage = _between(answers, down_at + 0.5, up_at)
    assert outage, "uploads were answered while the store was down"
    assert {(a.status, a.code) for a in outage} == {(503, "storage_unavailable")}
    recovered = _between(answers, recovered_at, time.monotonic())
    assert recovered, "uploads were answered after the store came back"
    assert all(a.status == 201 for a in recovered), outcomes(recovered)

    store = open_store(storage_url)
    acks = acknowledged(answers)
    census = take_census(database, store, acks)
    assert_every_ack_pending_and_stored(census, acks)
    # A write the store took whose answer was lost has no row: two sweeps remove it.
    sweeper = OrphanSweeper(database=database, store=store)
    sweeper.run()
    sweeper.run()
    assert set(store.list("pending/")) == census.pending_row_keys


def _terminate_backends(database_url: str, stop: threading.Event, kills: list[int]) -> None:
    """Kill every other connection to this test's database, twice a second, until ``stop``."""
    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        while not stop.wait(0.5):
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            kills.append(int(killed[0]) if killed else 0)


def test_killed_database_connections_answer_503_and_recover(
    chorus_server: ServerFactory,
    fresh_postgres_url: str,
    e2e_database: Database,
    s3_store_url: str,
    fsdd_wavs: list[bytes],
    consent_keys: ConsentKeys,
) -> None:
    database = e2e_database
    database.dispose()  # its pooled connections would only be killed too
    server = chorus_server(database_url=fresh_postgres_url, storage_url=s3_store_url).start()
    load = UploadLoad([server.url], fsdd_wavs, consent_keys, threads=4, seed=3).start()

    time.sleep(2)
    stop, kills = threading.Event(), list[int]()
    killer = threading.Thread(target=_terminate_backends, args=(fresh_postgres_url, stop, kills))
    killer.start()
    time.sleep(6)
    stop.set()
    killer.join(10)
    _wait_ready(server.url)
    recovered_at = time.monotonic()
    time.sleep(3)
    answers = load.stop()

    seen = outcomes(answers)
    print("connections killed:", sum(kills), dict(seen))
    assert sum(kills) >= 5, kills
    assert set(seen) <= {(201, ""), (503, "database_unavailable")}, seen
    after = _between(answers, recovered_at, time.monotonic())
    assert after, "uploads were answered after the kills stopped"
    assert all(a.status == 201 for a in after), outcomes(after)

    acks = acknowledged(answers)
    store = open_store(s3_store_url)
    census = take_census(database, store, acks)
    # A commit whose answer was lost may have stored a clip its client saw refused.
    refused = seen[(503, "database_unavailable")]
    assert_every_ack_pending_and_stored(census, acks, unacknowledged_attempts=refused)
    sweeper = OrphanSweeper(database=database, store=store)
    sweeper.run()
    sweeper.run()
    assert set(store.list("pending/")) == census.pending_row_keys


def test_a_replica_killed_under_load_kept_every_clip_it_acknowledged(
    chorus_server: ServerFactory,
    fresh_postgres_url: str,
    e2e_database: Database,
    s3_store_url: str,
    fsdd_wavs: list[bytes],
    consent_keys: ConsentKeys,
) -> None:
    database = e2e_database
    server = chorus_server(database_url=fresh_postgres_url, storage_url=s3_store_url).start()
    load = UploadLoad([server.url], fsdd_wavs, consent_keys, threads=6, seed=4).start()
    time.sleep(4)
    server.kill()
    killed_at = time.monotonic()
    time.sleep(1)
    answers = load.stop()

    seen = outcomes(answers)
    print("replica killed:", dict(seen))
    assert set(seen) <= {
        (201, ""),
        (0, "ConnectError"),
        (0, "RemoteProtocolError"),
        (0, "ReadError"),
    }, seen
    acks = acknowledged(answers)
    assert len(acks) >= 20, seen
    # Uploads the kill cut off; later ones found nobody listening and stored nothing.
    cut_off = [a for a in answers if a.status == 0 and a.sent < killed_at]
    store = open_store(s3_store_url)
    census = take_census(database, store, acks)
    print("acknowledged", len(acks), "cut off", len(cut_off), "rows", census.pending_rows)
    assert_every_ack_pending_and_stored(census, acks, unacknowledged_attempts=len(cut_off))

    # A fresh process on the same database and store serves again, and the sweeper removes
    # any object whose row the killed process never wrote.
    replacement = chorus_server(database_url=fresh_postgres_url, storage_url=s3_store_url)
    replacement.start()
    more = UploadLoad([replacement.url], fsdd_wavs, consent_keys, threads=2, seed=5).start()
    time.sleep(2)
    later = more.stop()
    assert later
    assert all(a.status == 201 for a in later), outcomes(later)
    sweeper = OrphanSweeper(database=database, store=store)
    sweeper.run()
    sweeper.run()
    final = take_census(database, store, [*acks, *acknowledged(later)])
    assert not final.unmatched
    assert final.pending_objects == final.pending_row_keys


class _CommitAnswerLost(Database):
    """Commits the first write, then reports the connection lost, as a backend killed right
    after COMMIT does: the row is there, the service cannot know it."""

    armed = True

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        with super().session(write=write) as session:
            yield session
        self._lose_answer(write)

    @contextlib.contextmanager
    def connection(self, *, write: bool = False) -> Iterator[sa.Connection]:
        with super().connection(write=write) as connection:
            yield connection
        self._lose_answer(write)

    def _lose_answer(self, write: bool) -> None:
        if write and self.armed:
            self.armed = False
            raise DatabaseUnavailable()


def test_a_commit_whose_answer_was_lost_keeps_its_object(
    tmp_path: Path, policy_file: Path, fsdd_wavs: list[bytes]
) -> None:
    database = _CommitAnswerLost(f"sqlite:///{tmp_path / 'chorus.db'}")
    database.upgrade()
    store = FileBlobStore(tmp_path / "blobs")
    policy = load_policy(str(policy_file))
    consent = Consent(
        learner_id="learner-1", consent_version="speech-research-v1", age=30, child=False
    )
    # The exercise's bucket is open already: the next write is the clip's row.
    database.armed = False
    current_open_bucket(database, "digit-0", keys=keys_for(database))
    database.armed = True

    with pytest.raises(DatabaseUnavailable):
        store_clip(
            database=database,
            store=store,
            policy=policy,
            consent=consent,
            exercise_id="digit-0",
            clip=sanitize_audio(fsdd_wavs[0], audio_limits(policy)),
            keys=keys_for(database),
        )

    with database.session() as session:
        (object_key,) = session.execute(sa.select(PendingClip.object_key)).scalars()
    # The row landed, so its clip must stay: a row without its object would stall the release
    # of the whole bucket. Were there no row, the sweeper would remove the object.
    assert store.exists(object_key)
    sweeper = OrphanSweeper(database=database, store=store)
    assert sweeper.run() + sweeper.run() == 0
    assert store.exists(object_key)
    database.dispose()
