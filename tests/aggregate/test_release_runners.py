"""Several release runners against one database: each bucket is released exactly once.

On PostgreSQL the runners claim buckets with advisory locks; on SQLite they take turns on a
file lock beside the database (``Database.sidecar_lock``).
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from aggregate.release import release_bucket, release_ready_buckets
from aggregate.tables import Bucket, Release
from core.db import Database
from core.storage import BlobStore
from policies.policy import Policy
from tests.aggregate.census import assert_each_released_once, take_census
from tests.aggregate.clips import SPEAKERS, ClipSource, Seed, seed_clip
from tests.aggregate.releases import release_audit_entries
from tests.keys import keys_for


@pytest.fixture
def database(database_on_both: Database) -> Database:
    return database_on_both


def test_two_concurrent_runners_release_each_bucket_exactly_once(
    database: Database, store: BlobStore, seed: Seed, policy: Policy
) -> None:
    clips = [c for digit in range(6) for c in seed(database, store, digit=digit)]
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def runner() -> None:
        try:
            start.wait()
            outcomes = release_ready_buckets(
                database, store, policy, keys=keys_for(database), batch_size=2
            )
            results.append([o.bucket_id for o in outcomes])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    released = [bucket for result in results for bucket in result]
    assert len(released) == 6
    assert len(set(released)) == 6  # no bucket released by both runners
    assert_each_released_once(take_census(database, store), clips)
    entries = release_audit_entries(database)
    assert sorted(str(e["bucket_id"]) for e in entries) == sorted(released)
    with database.session() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Release)).scalar_one() == 6


def test_a_live_runners_bucket_is_not_taken_over(
    database: Database, store: BlobStore, seed: Seed, policy: Policy
) -> None:
    clips = seed(database, store, digit=3)
    with database.session() as session:
        bucket_id = session.execute(sa.select(Bucket.id)).scalar_one()
    paused = threading.Event()
    resume = threading.Event()
    outcome: list[object] = []

    def slow_checkpoint(step: str) -> None:
        if step == "copied" and not paused.is_set():
            paused.set()
            assert resume.wait(timeout=60)

    def first_runner() -> None:
        outcome.append(
            release_bucket(
                database,
                store,
                policy,
                bucket_id,
                keys=keys_for(database),
                batch_size=2,
                checkpoint=slow_checkpoint,
            )
        )

    thread = threading.Thread(target=first_runner)
    thread.start()
    assert paused.wait(timeout=60)
    # The bucket is 'releasing' and its claim is held: a second runner leaves it alone.
    assert release_ready_buckets(database, store, policy, keys=keys_for(database)) == []
    with database.session() as session:
        bucket = session.get(Bucket, bucket_id)
        assert bucket is not None
        assert bucket.state == "releasing"
    resume.set()
    thread.join(timeout=60)
    assert outcome[0] is not None
    assert_each_released_once(take_census(database, store), clips)
    assert len(release_audit_entries(database)) == 1


def test_a_crashed_runners_bucket_is_resumed(
    database: Database, store: BlobStore, seed: Seed, policy: Policy
) -> None:
    clips = seed(database, store, digit=5)

    class Crash(Exception):
        pass

    def crash(step: str) -> None:
        if step == "manifest":
            raise Crash

    with pytest.raises(Crash):
        release_ready_buckets(database, store, policy, keys=keys_for(database), checkpoint=crash)
    # The crashed runner's claim died with it; the next run finishes the same release.
    outcomes = release_ready_buckets(database, store, policy, keys=keys_for(database))
    assert len(outcomes) == 1
    assert_each_released_once(take_census(database, store), clips)
    assert len(release_audit_entries(database)) == 1


def test_uploads_during_a_release_land_in_exactly_one_bucket(
    database: Database, store: BlobStore, seed: Seed, policy: Policy, fsdd_flac: ClipSource
) -> None:
    clips = seed(database, store, digit=0)
    late = [fsdd_flac(0, speaker, take) for take in range(1, 5) for speaker in SPEAKERS]
    done = threading.Event()

    def uploader() -> None:
        for n, clip in enumerate(late):
            seed_clip(database, store, exercise_id="digit-0", learner_id=f"late-{n}", clip=clip)
        done.set()

    def slow(_step: str) -> None:
        time.sleep(0.01)

    thread = threading.Thread(target=uploader)
    thread.start()
    while not done.is_set():
        release_ready_buckets(
            database, store, policy, keys=keys_for(database), batch_size=2, checkpoint=slow
        )
    thread.join(timeout=60)
    census = take_census(database, store)
    for clip in clips + late:
        assert census.places(clip) == 1, clip.name
    assert census.pending_rows == sum(census.pending.values())
    assert census.released_rows == sum(census.released.values())
    with database.session() as session:
        released = session.execute(sa.select(sa.func.sum(Release.clip_count))).scalar_one()
    assert released == census.released_rows
