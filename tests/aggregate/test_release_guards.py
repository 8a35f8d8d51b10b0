"""What a release re-checks before it finishes: withdrawals that reached a bucket while it was
being released (P9, P6), and the exercise's eligibility at release time (P5)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from aggregate.buckets import withdraw_learner
from aggregate.release import release_ready_buckets
from aggregate.tables import Bucket, PendingClip, Release, ReleasedClip
from core.db import Database
from core.storage import BlobStore
from policies.policy import Policy
from policies.tables import AuditEntry
from tests.aggregate.census import released_clip_bytes
from tests.aggregate.clips import SPEAKERS, Seed
from tests.keys import keys_for


class Crash(Exception):
    pass


def _kill_after_first_copy(database: Database, store: BlobStore, policy: Policy) -> None:
    """A release killed once its first batch is copied: the bucket stays ``releasing``."""

    def crash(step: str) -> None:
        if step == "copied":
            raise Crash(step)

    with pytest.raises(Crash):
        release_ready_buckets(
            database, store, policy, keys=keys_for(database), batch_size=2, checkpoint=crash
        )
    with database.session() as session:
        assert session.execute(sa.select(Bucket.state)).scalar_one() == "releasing"


def _withdraw(database: Database, store: BlobStore, learner_id: str) -> int:
    with database.session(write=True) as session:
        object_keys = withdraw_learner(session, learner_id, keys=keys_for(database))
    for key in object_keys:
        store.delete(key)
    return sum(key.startswith("pending/") for key in object_keys)


def _released_bytes(store: BlobStore) -> set[bytes]:
    return set(released_clip_bytes(store))


def test_a_withdrawal_during_a_release_keeps_the_clip_out_of_it(
    database: Database, store: BlobStore, seed: Seed, policy: Policy
) -> None:
    clips = seed(database, store, digit=8, speakers=6)
    _kill_after_first_copy(database, store, policy)

    assert _withdraw(database, store, f"learner-{SPEAKERS[0]}") == 1
    (outcome,) = release_ready_buckets(database, store, policy, keys=keys_for(database))

    assert (outcome.clip_count, outcome.contributor_count) == (5, 5)
    released = _released_bytes(store)
    assert len(released) == 5
    assert clips[0].data not in released
    assert released == {clip.data for clip in clips[1:]}
    manifest = json.loads(store.get(f"releases/{outcome.release_id}/manifest.json"))
    assert len(manifest["clips"]) == 5


def test_a_release_that_withdrawals_bring_below_k_is_undone_and_sealed(
    database: Database, store: BlobStore, seed: Seed, policy: Policy
) -> None:
    seed(database, store, digit=8, speakers=policy.k)
    _kill_after_first_copy(database, store, policy)

    assert _withdraw(database, store, f"learner-{SPEAKERS[0]}") == 1
    assert release_ready_buckets(database, store, policy, keys=keys_for(database)) == []

    assert list(store.list("releases/")) == []
    with database.session() as session:
        assert session.execute(sa.select(Bucket.state)).scalar_one() == "sealed"
        assert session.execute(sa.select(sa.func.count()).select_from(Release)).scalar() == 0
        released_rows = sa.select(sa.func.count()).select_from(ReleasedClip)
        assert session.execute(released_rows).scalar() == 0
        pending_rows = sa.select(sa.func.count()).select_from(PendingClip)
        assert session.execute(pending_rows).scalar() == policy.k - 1
        assert (
            session.execute(sa.select(AuditEntry).where(AuditEntry.kind == "release")).first()
            is None
        )


def test_a_bucket_of_an_exercise_no_longer_eligible_is_retired_not_released(
    database: Database, store: BlobStore, seed: Seed, policy: Policy
) -> None:
    seed(database, store, digit=4, speakers=policy.k)
    with database.session(write=True) as session:
        session.execute(sa.text("UPDATE exercise_usage SET learners = 1"))

    assert release_ready_buckets(database, store, policy, keys=keys_for(database)) == []

    assert list(store.list("releases/")) == []
    assert list(store.list("pending/")) == []
    with database.session() as session:
        assert session.execute(sa.select(Bucket.state)).scalar_one() == "purged"
        (body,) = session.execute(
            sa.select(AuditEntry.body).where(AuditEntry.kind == "purge")
        ).scalars()
    entry = json.loads(body)
    assert entry["reason"] == "exercise_below_min_learners"
    assert entry["exercise_learners"] == 1
    assert entry["contributor_count"] == policy.k
