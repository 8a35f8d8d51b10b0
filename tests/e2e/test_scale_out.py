"""Two ``chorus serve`` replicas on one PostgreSQL and one SeaweedFS, both releasing (§8).

Uploads are spread over both replicas while the scheduler in each runs the release cycle every
two seconds. Afterwards every acknowledged clip is in exactly one place — a released batch or
its own pending row — no bucket was released twice, and the audit is clean.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from aggregate.release import ready_bucket_ids
from aggregate.tables import Bucket, PendingClip
from chorus.audit import run_audit
from core.db import Database
from core.storage import open_store
from policies.policy import load_policy
from policies.tables import AuditEntry
from tests.consent import ConsentKeys
from tests.e2e.deployment import ServerFactory
from tests.e2e.load import UploadLoad, acknowledged, outcomes, take_census

pytestmark = pytest.mark.e2e

LOAD_S = 25.0
RELEASE_INTERVAL_S = 2


def _settled(database: Database, k: int, store_pending: int) -> bool:
    """No bucket mid-release, none ready, and every pending object has its row."""
    with database.session() as session:
        releasing = session.execute(
            sa.select(sa.func.count()).select_from(Bucket).where(Bucket.state == "releasing")
        ).scalar_one()
        ready = ready_bucket_ids(session, k=k)
        rows = session.execute(sa.select(sa.func.count()).select_from(PendingClip)).scalar_one()
    return releasing == 0 and not ready and rows == store_pending


def _released_by(log_path: Path) -> int:
    """Buckets a replica's release job reported releasing (its JSON log lines)."""
    released = 0
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"release cycle"' in line:
            released += int(json.loads(line).get("released", 0))
    return released


def test_two_replicas_release_every_acknowledged_clip_exactly_once(
    chorus_server: ServerFactory,
    fresh_postgres_url: str,
    e2e_database: Database,
    s3_store_url: str,
    policy_file: Path,
    fsdd_wavs: list[bytes],
    consent_keys: ConsentKeys,
) -> None:
    database = e2e_database
    store = open_store(s3_store_url)
    policy = load_policy(str(policy_file))
    replicas = [
        chorus_server(
            database_url=fresh_postgres_url,
            storage_url=s3_store_url,
            scheduler_enabled="true",
            release_interval=str(RELEASE_INTERVAL_S),
            log_level="INFO",
        )
        for _ in range(2)
    ]
    for replica in replicas:  # both start (and migrate) at once
        replica.launch()
    for replica in replicas:
        replica.wait_ready()

    # A pool of learners: some uploads meet the contribution cap (409) and are not counted.
    load = UploadLoad(
        [r.url for r in replicas], fsdd_wavs, consent_keys, threads=6, learners=40, seed=1
    ).start()
    time.sleep(LOAD_S)
    answers = load.stop()
    acks = acknowledged(answers)
    seen = outcomes(answers)
    assert set(seen) <= {(201, ""), (409, "contribution_limit")}, seen
    assert {a.server for a in acks} == {0, 1}, "both replicas took uploads"
    assert len(acks) >= 100, seen

    deadline = time.monotonic() + 30
    while not _settled(database, policy.k, len(list(store.list("pending/")))):
        assert time.monotonic() < deadline, "releases did not settle within 30 s"
        time.sleep(RELEASE_INTERVAL_S / 2)
    for replica in replicas:
        assert replica.running, replica.log_tail()

    census = take_census(database, store, acks)
    print(
        "scale-out:",
        dict(seen),
        "releases",
        census.releases,
        "released",
        census.released_rows,
        "pending",
        census.pending_rows,
        "releases per replica",
        [_released_by(r.log_path) for r in replicas],
    )
    # Exactly one place each: released rows and pending rows add up to the 201s ...
    assert census.rows == len(acks), (census.rows, len(acks))
    # ... each pending row is one acknowledged upload's own, and its object is there ...
    assert len(acks) - len(census.unmatched) == census.pending_rows
    assert census.pending_objects == census.pending_row_keys
    # ... and each released row has exactly one released object (no pending twin left).
    assert census.released_objects == census.released_rows
    assert census.releases >= 5, "the replicas released during the load"

    assert len(set(census.release_bucket_ids)) == census.releases
    with database.session() as session:
        bodies = session.execute(
            sa.select(AuditEntry.body).where(AuditEntry.kind == "release")
        ).scalars()
        released_in_audit = [json.loads(body)["bucket_id"] for body in bodies]
    assert len(released_in_audit) == len(set(released_in_audit)) == census.releases
    assert set(released_in_audit) == set(census.release_bucket_ids)

    report = run_audit(database=database, store=store, policy=policy)
    assert report.ok, [finding for finding in report.findings]
