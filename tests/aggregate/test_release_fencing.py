"""A release runner that lost its PostgreSQL lock while it lived is fenced off: it cannot
finish, overwrite or undo the release of the runner that claimed the bucket after it.

The forced ordering is the one that broke a release: runner A writes its manifest, its lock's
connection is terminated, runner B takes the lock and claims the same ``releasing`` bucket,
A carries on to finalize and drain, then B carries on. The random run terminates the lock
connections of two looping runners again and again until every bucket is released.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from aggregate.release import ReleaseOutcome, release_ready_buckets
from aggregate.tables import Bucket, Release, ReleasedClip
from core.db import Database
from core.storage import BlobStore, open_store
from policies.context import shard_members
from policies.policy import Policy
from tests.aggregate.census import assert_each_released_once, take_census
from tests.aggregate.clips import Seed
from tests.aggregate.releases import release_audit_entries
from tests.keys import keys_for

pytestmark = pytest.mark.postgres
KILLS = 4  # lock connections the random run terminates
BUCKETS = 8


@pytest.fixture
def pg_url(fresh_postgres_url: str) -> str:
    Database(fresh_postgres_url).upgrade()
    return fresh_postgres_url


@pytest.fixture
def runners(pg_url: str) -> Iterator[list[Database]]:
    """Two runners' own connection pools on one database, as two processes would have."""
    databases = [Database(pg_url), Database(pg_url)]
    yield databases
    for database in databases:
        database.dispose()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return open_store(f"file://{tmp_path / 'blobs'}")


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def terminate_lock_holders(url: str) -> int:
    """End every backend of this database that holds an advisory lock (a release claim)."""
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        return len(
            conn.execute(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                "JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND d.datname = current_database() "
                "AND l.pid <> pg_backend_pid()"
            ).fetchall()
        )


def assert_manifests_match_rows(database: Database, store: BlobStore) -> None:
    """Every release's stored manifest lists exactly its released clips, and its count."""
    with database.session() as session:
        releases = session.execute(sa.select(Release)).scalars().all()
        for release in releases:
            manifest = json.loads(store.get(release.manifest_key))
            clip_ids = set(
                session.execute(
                    sa.select(ReleasedClip.id).where(ReleasedClip.release_id == release.id)
                ).scalars()
            )
            assert manifest["clip_count"] == release.clip_count == len(clip_ids) > 0
            assert {clip["clip_id"] for clip in manifest["clips"]} == clip_ids
            members = [
                name
                for key in store.list(f"releases/{release.id}/shards/")
                for name, _data in shard_members(store.get(key))
            ]
            assert sorted(members) == sorted(f"clips/{clip_id}.flac" for clip_id in clip_ids)


@pytest.mark.parametrize("a_loses_lock_at", ["manifest", "claimed"])
def test_forced_lock_loss_ordering_keeps_the_release_whole(
    pg_url: str,
    runners: list[Database],
    store: BlobStore,
    seed: Seed,
    policy: Policy,
    a_loses_lock_at: str,
) -> None:
    """``manifest``: B claims, A finalizes and drains, then B goes on (the issue's ordering).
    ``claimed``: B releases the whole bucket, then A goes on to plan, prune and write."""
    runner_a, runner_b = runners
    clips = seed(runner_a, store, digit=4)
    b_claimed, b_go = threading.Event(), threading.Event()
    if a_loses_lock_at == "claimed":
        b_go.set()  # B runs to the end while A waits
    results: dict[str, list[ReleaseOutcome]] = {}
    failures: list[BaseException] = []

    def b_checkpoint(step: str) -> None:
        if step == "claimed" and not b_claimed.is_set():
            b_claimed.set()
            assert b_go.wait(60)

    def run_b() -> None:
        try:
            results["b"] = release_ready_buckets(
                runner_b, store, policy, keys=keys_for(pg_url), checkpoint=b_checkpoint
            )
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    b = threading.Thread(target=run_b)

    def a_checkpoint(step: str) -> None:
        if step == a_loses_lock_at and not b.is_alive() and not b_claimed.is_set():
            # A's lock connection dies; B takes the lock and claims the bucket.
            assert terminate_lock_holders(pg_url) == 1
            b.start()
            assert b_claimed.wait(60)
            if b_go.is_set():
                b.join(timeout=120)

    results["a"] = release_ready_buckets(
        runner_a, store, policy, keys=keys_for(pg_url), checkpoint=a_checkpoint
    )
    b_go.set()
    b.join(timeout=120)
    assert failures == []
    # A was fenced off at its next write; B, the owner, finished the release.
    assert results["a"] == []
    assert [o.clip_count for o in results["b"]] == [5]
    assert_each_released_once(take_census(runner_a, store), clips)
    assert_manifests_match_rows(runner_a, store)
    assert [e["clip_count"] for e in release_audit_entries(runner_a)] == [5]


def test_random_lock_loss_releases_every_bucket_once(
    pg_url: str, runners: list[Database], store: BlobStore, seed: Seed, policy: Policy
) -> None:
    clips = [c for digit in range(BUCKETS) for c in seed(runners[0], store, digit=digit)]
    stop = threading.Event()
    failures: list[BaseException] = []
    kills: list[int] = []
    interrupted: list[str] = []
    rng = random.Random(15)

    def slow(_step: str) -> None:
        time.sleep(rng.uniform(0.02, 0.1))

    def runner(database: Database) -> None:
        while not stop.is_set():
            try:
                release_ready_buckets(
                    database,
                    store,
                    policy,
                    keys=keys_for(pg_url),
                    batch_size=2,
                    checkpoint=slow,
                )
            except Exception as exc:  # a terminated connection: the next loop resumes
                interrupted.append(type(exc).__name__)
            except BaseException as exc:  # surfaced below
                failures.append(exc)
                return

    def killer() -> None:
        # Bounded: enough losses to interleave the runners, then they are left to finish.
        while sum(kills) < KILLS and not stop.wait(rng.uniform(0.05, 0.3)):
            kills.append(terminate_lock_holders(pg_url))

    threads = [threading.Thread(target=runner, args=(db,)) for db in runners]
    threads.append(threading.Thread(target=killer))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with runners[0].session() as session:
                states = session.execute(sa.select(Bucket.state)).scalars().all()
            if sum(kills) >= KILLS and states and all(state == "released" for state in states):
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    assert sum(kills) >= KILLS, kills  # the runs did lose their locks, repeatedly
    # A final quiet run finishes any drain a killed runner left.
    release_ready_buckets(runners[0], store, policy, keys=keys_for(pg_url))
    assert_each_released_once(take_census(runners[0], store), clips)
    assert_manifests_match_rows(runners[0], store)
    assert sorted(e["clip_count"] for e in release_audit_entries(runners[0])) == [5] * BUCKETS
