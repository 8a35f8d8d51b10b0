"""A bucket whose memory-only key is lost is purged, audited, and releases nothing (P4, P8).

Pending clips are sealed under their bucket's key: once the key is gone (a reboot, a Redis
flush) no one can open them, so the bucket cannot be released. The next release cycle purges
it with a ``purge`` audit entry whose reason is ``key_lost``, and the next upload opens a fresh
bucket. A bucket lost half-way through its release takes its unfinished release with it.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from aggregate.buckets import key_name
from aggregate.jobs import CycleReport, run_release_cycle
from aggregate.metrics import KEY_LOST_BUCKETS, KEY_LOST_CLIPS
from aggregate.release import Checkpoint, no_checkpoint
from aggregate.tables import Bucket, PendingClip, Release, ReleasedClip
from core.db import Database
from core.storage import BlobStore
from policies.policy import Policy
from tests.aggregate.clips import Seed
from tests.aggregate.releases import audit_log
from tests.keys import keys_for


def _lose_key(database: Database) -> str:
    with database.session() as session:
        bucket_id = session.execute(sa.select(Bucket.id)).scalar_one()
    keys_for(database).delete(key_name(bucket_id))
    return bucket_id


def _cycle(
    database: Database,
    store: BlobStore,
    policy: Policy,
    *,
    checkpoint: Checkpoint = no_checkpoint,
) -> CycleReport:
    return run_release_cycle(
        database=database,
        store=store,
        keys=keys_for(database),
        policy=policy,
        interval_s=1,
        checkpoint=checkpoint,
    )


def test_a_keyless_bucket_is_purged_with_an_audit_entry(
    database: Database, store: BlobStore, policy: Policy, seed: Seed
) -> None:
    seed(database, store, digit=4, speakers=3)
    bucket_id = _lose_key(database)
    buckets_before = KEY_LOST_BUCKETS._value.get()
    clips_before = KEY_LOST_CLIPS._value.get()

    report = _cycle(database, store, policy)

    assert report.released == []
    assert [(p.bucket_id, p.clip_count) for p in report.purged] == [(bucket_id, 3)]
    purges = [body for kind, body in audit_log(database) if kind == "purge"]
    assert len(purges) == 1
    assert purges[0]["reason"] == "key_lost"
    assert purges[0]["clip_count"] == 3
    assert purges[0]["contributor_count"] == 3
    with database.session() as session:
        assert session.execute(sa.select(Bucket.state)).scalar_one() == "purged"
        assert session.execute(sa.select(sa.func.count()).select_from(PendingClip)).scalar() == 0
    assert list(store.list("pending/")) == []
    assert KEY_LOST_BUCKETS._value.get() == buckets_before + 1
    assert KEY_LOST_CLIPS._value.get() == clips_before + 3


def test_a_ready_bucket_that_lost_its_key_is_not_released(
    database: Database, store: BlobStore, policy: Policy, seed: Seed
) -> None:
    seed(database, store, digit=4, speakers=5)
    _lose_key(database)
    report = _cycle(database, store, policy)
    assert report.released == []
    assert [p.clip_count for p in report.purged] == [5]
    assert list(store.list("releases/")) == []


class _Crash(Exception):
    pass


def test_a_release_killed_then_keyless_is_purged_whole(
    database: Database, store: BlobStore, policy: Policy, seed: Seed
) -> None:
    seed(database, store, digit=6, speakers=5)

    def crash(step: str) -> None:
        if step == "copied":
            raise _Crash()

    with pytest.raises(_Crash):
        _cycle(database, store, policy, checkpoint=crash)
    assert any(key.endswith(".tar") for key in store.list("releases/"))
    _lose_key(database)

    report = _cycle(database, store, policy)

    assert report.released == []
    assert [p.clip_count for p in report.purged] == [5]
    assert list(store.list("releases/")) == []
    assert list(store.list("pending/")) == []
    with database.session() as session:
        assert session.execute(sa.select(Bucket.state)).scalar_one() == "purged"
        assert session.execute(sa.select(sa.func.count()).select_from(Release)).scalar() == 0
        assert session.execute(sa.select(sa.func.count()).select_from(ReleasedClip)).scalar() == 0
    assert [kind for kind, _ in audit_log(database) if kind in ("release", "purge")] == ["purge"]
