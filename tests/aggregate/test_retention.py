"""Release cycles advance once per interval; a bucket below k for retention_cycles is purged."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from aggregate.buckets import key_name
from aggregate.jobs import preview_release_cycle, run_release_cycle
from aggregate.retention import advance_cycle
from aggregate.tables import Bucket, PendingClip
from core.db import Database
from core.storage import BlobStore
from policies.audit import current_cycle, verify_chain
from policies.policy import Policy, load_policy
from policies.tables import AuditEntry
from tests.aggregate.clips import Seed
from tests.keys import keys_for

HOUR = 3600.0
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def policy() -> Policy:
    return load_policy("demo").model_copy(update={"retention_cycles": 2})


def test_the_cycle_advances_at_most_once_per_interval(database: Database) -> None:
    with database.session() as session:
        assert advance_cycle(session, interval_s=HOUR, now=T0) == 1
    with database.session() as session:  # a second replica in the same interval
        assert advance_cycle(session, interval_s=HOUR, now=T0 + dt.timedelta(minutes=5)) is None
    with database.session() as session:
        assert advance_cycle(session, interval_s=HOUR, now=T0 + dt.timedelta(hours=1)) == 2
        assert current_cycle(session) == 2


def test_a_bucket_below_k_is_purged_after_retention_cycles(
    database: Database, store: BlobStore, seed: Seed, policy: Policy
) -> None:
    seed(database, store, digit=2, speakers=3)
    assert len(list(store.list("pending/"))) == 3

    def cycle(hours: int) -> list[str]:
        report = run_release_cycle(
            database=database,
            keys=keys_for(database),
            store=store,
            policy=policy,
            interval_s=HOUR,
            now=T0 + dt.timedelta(hours=hours),
        )
        return [p.exercise_id for p in report.purged]

    assert cycle(0) == []  # opened in cycle 0, now cycle 1
    preview = preview_release_cycle(
        database=database, policy=policy, interval_s=HOUR, now=T0 + dt.timedelta(hours=1)
    )
    assert [b.exercise_id for b in preview.to_purge] == ["digit-2"]
    assert len(list(store.list("pending/"))) == 3  # the preview changed nothing
    assert cycle(1) == ["digit-2"]  # cycle 2: retention reached

    assert list(store.list("pending/")) == []
    with database.session() as session:
        bucket = session.execute(sa.select(Bucket)).scalar_one()
        assert bucket.state == "purged"
        assert keys_for(database).get(key_name(bucket.id)) is None
        pending_rows = sa.select(sa.func.count()).select_from(PendingClip)
        assert session.execute(pending_rows).scalar_one() == 0
        (entry,) = session.execute(
            sa.select(AuditEntry).where(AuditEntry.kind == "purge")
        ).scalars()
        body = json.loads(entry.body)
        assert body["clip_count"] == 3
        assert body["contributor_count"] == 3
        assert body["retention_cycles"] == 2
        assert verify_chain(session).ok


def test_a_bucket_that_reaches_k_in_its_last_cycle_is_released_not_purged(
    database: Database, store: BlobStore, seed: Seed, policy: Policy
) -> None:
    seed(database, store, digit=5, speakers=4)
    run_release_cycle(
        database=database,
        keys=keys_for(database),
        store=store,
        policy=policy,
        interval_s=HOUR,
        now=T0,
    )
    seed(database, store, digit=5, speakers=5, first_speaker=4)
    report = run_release_cycle(
        database=database,
        keys=keys_for(database),
        store=store,
        policy=policy,
        interval_s=HOUR,
        now=T0 + dt.timedelta(hours=1),
    )
    assert [r.clip_count for r in report.released] == [5]
    assert report.purged == []


def test_a_failing_release_does_not_hold_back_retention(
    database: Database,
    store: BlobStore,
    seed: Seed,
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aggregate.jobs
    from core.errors import StorageUnavailable

    seed(database, store, digit=2, speakers=3)  # below k: purged after retention_cycles
    first = run_release_cycle(
        database=database,
        keys=keys_for(database),
        store=store,
        policy=policy,
        interval_s=HOUR,
        now=T0,
    )
    assert first.purged == []

    def broken_release(*_args: object, **_kwargs: object) -> list[object]:
        raise StorageUnavailable()

    monkeypatch.setattr(aggregate.jobs, "release_ready_buckets", broken_release)
    with pytest.raises(StorageUnavailable):
        run_release_cycle(
            database=database,
            keys=keys_for(database),
            store=store,
            policy=policy,
            interval_s=HOUR,
            now=T0 + dt.timedelta(hours=1),
        )
    with database.session() as session:
        states = session.execute(sa.select(Bucket.state)).scalars().all()
    assert states == ["purged"]
    assert list(store.list("pending/")) == []
