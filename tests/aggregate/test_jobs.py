"""The release cycle runs on the scheduler without anyone calling it."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

from aggregate.jobs import JOB_ID, schedule_release_job
from aggregate.tables import Bucket
from core.db import Database
from core.scheduler import PROCESS_EXECUTOR, build_scheduler
from core.storage import open_store
from policies.policy import load_policy
from tests.aggregate.conftest import Seed


def test_the_scheduled_job_releases_a_ready_bucket(
    database: Database, tmp_path: Path, seed: Seed
) -> None:
    store = open_store(f"file://{tmp_path / 'blobs'}")
    seed(database, store, digit=1)
    scheduler = build_scheduler()
    schedule_release_job(
        scheduler,
        database_url=database.url,
        storage_url=f"file://{tmp_path / 'blobs'}",
        key_store_url="memory://",
        policy=load_policy("demo"),
        interval="1",
    )
    job = scheduler.get_job(JOB_ID)
    assert job is not None
    # Off the API process: a cycle's CPU must not stall the event loop.
    assert job.executor == PROCESS_EXECUTOR
    scheduler.start()
    try:
        deadline = time.monotonic() + 15
        state = "open"
        while time.monotonic() < deadline and state != "released":
            time.sleep(0.2)
            with database.session() as session:
                state = session.execute(sa.select(Bucket.state)).scalar_one()
    finally:
        scheduler.shutdown(wait=True)
    assert state == "released"
    assert list(store.list("pending/")) == []
