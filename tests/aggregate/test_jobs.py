"""The release cycle runs on the scheduler without anyone calling it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import sqlalchemy as sa

from aggregate.jobs import JOB_ID, run_release_cycle, schedule_release_job
from aggregate.tables import Bucket
from core.db import Database
from core.scheduler import PROCESS_EXECUTOR, build_scheduler
from core.storage import BlobStore, open_store
from policies.policy import load_policy
from tests.aggregate.clips import Seed
from tests.aggregate.releases import audit_log, write_policy
from tests.keys import keys_for


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
        key_store_url=os.environ["CHORUS_KEY_STORE_URL"],  # shared with this process
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
    # The job process recorded the policy it was handed before releasing under it (P8).
    log = audit_log(database)
    assert [kind for kind, _ in log] == ["policy_loaded", "release"]
    assert log[0][1]["content_hash"] == log[1][1]["policy_hash"] == load_policy("demo").content_hash


def test_each_cycle_records_a_changed_policy_once(
    database: Database, store: BlobStore, seed: Seed, tmp_path: Path
) -> None:
    demo = load_policy("demo")
    lower = load_policy(str(write_policy(tmp_path, k=2)))
    for policy in (demo, demo, lower, lower, demo):
        run_release_cycle(
            database=database, keys=keys_for(database), store=store, policy=policy, interval_s=3600
        )
    recorded = [
        body["content_hash"] for kind, body in audit_log(database) if kind == "policy_loaded"
    ]
    assert recorded == [demo.content_hash, lower.content_hash, demo.content_hash]

    seed(database, store, digit=5, speakers=2)
    report = run_release_cycle(
        database=database, keys=keys_for(database), store=store, policy=lower, interval_s=3600
    )
    assert len(report.released) == 1
    kinds = [kind for kind, _ in audit_log(database)]
    assert kinds[-2:] == ["policy_loaded", "release"]
    assert audit_log(database)[-2][1]["content_hash"] == lower.content_hash
