"""The pending row's transaction: cap, bucket opening and their races, on both databases."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from aggregate.buckets import contributor_tag, key_name
from aggregate.tables import Bucket, PendingClip
from core.db import Database
from core.errors import ContributionLimit
from core.keystore import KeyStore
from core.storage import BlobStore, FileBlobStore
from ingest.audio import SanitizedClip
from ingest.consent import Consent
from ingest.service import store_clip
from policies.policy import load_policy
from tests.keys import keys_for
from tests.pending import seed_pending_clip

THREADS = 8


@pytest.fixture
def database(database_on_both: Database) -> Database:
    return database_on_both


def _add(database: Database, store: BlobStore, learner: str, *, cap: int = 1) -> None:
    """One clip of ``learner`` (a recording of its own) into digit-3's open bucket."""
    seed_pending_clip(
        database,
        store,
        exercise_id="digit-3",
        learner_id=learner,
        flac=secrets.token_bytes(64),
        duration_s=1.0,
        sample_rate=16000,
        loudness_dbfs=-20.0,
        max_clips_per_contributor=cap,
        catalog=False,
    )


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return FileBlobStore(tmp_path / "blobs")


def _race(database: Database, store: BlobStore, learners: list[str], *, cap: int) -> list[str]:
    """Each learner id on its own thread, all starting together; returns the outcomes."""
    barrier = threading.Barrier(len(learners))
    outcomes: list[str] = []

    def add(learner: str) -> None:
        barrier.wait()
        try:
            _add(database, store, learner, cap=cap)
            outcomes.append("stored")
        except ContributionLimit:
            outcomes.append("limit")

    threads = [threading.Thread(target=add, args=(learner,)) for learner in learners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_one_learner_racing_gets_exactly_the_cap(database: Database, store: BlobStore) -> None:
    outcomes = _race(database, store, ["learner-race"] * THREADS, cap=2)
    assert sorted(outcomes) == ["limit"] * (THREADS - 2) + ["stored"] * 2
    with database.session() as session:
        bucket = session.execute(sa.select(Bucket)).scalar_one()
        bucket_key = keys_for(database).get(key_name(bucket.id))
        assert bucket_key is not None
        slots = session.execute(
            sa.select(PendingClip.slot, PendingClip.contributor_tag).order_by(PendingClip.slot)
        ).all()
    tag = contributor_tag(bucket_key, "learner-race")
    assert slots == [(0, tag), (1, tag)]


def test_learners_racing_to_open_a_bucket_share_one(database: Database, store: BlobStore) -> None:
    outcomes = _race(database, store, [f"learner-{n}" for n in range(THREADS)], cap=1)
    assert outcomes == ["stored"] * THREADS
    with database.session() as session:
        buckets = session.execute(sa.select(Bucket.id, Bucket.state)).all()
        rows = session.execute(sa.select(PendingClip.bucket_id, PendingClip.slot)).all()
    assert [state for _id, state in buckets] == ["open"]
    assert sorted(rows) == [(buckets[0].id, 0)] * THREADS


def test_a_clip_never_joins_a_claimed_bucket(database: Database, store: BlobStore) -> None:
    _add(database, store, "a")
    with database.session(write=True) as session:
        session.execute(sa.update(Bucket).values(state="releasing"))
    _add(database, store, "a")
    with database.session() as session:
        per_bucket = dict(
            session.execute(
                sa.select(Bucket.state, sa.func.count(PendingClip.id))
                .join(PendingClip, PendingClip.bucket_id == Bucket.id)
                .group_by(Bucket.state)
            ).all()
        )
    assert per_bucket == {"releasing": 1, "open": 1}


class _SlowToMiss:
    """A key store that takes a while to answer "no such key": the uploads that find the key
    lost all hold the bucket row at once, as they do under load."""

    def __init__(self, inner: KeyStore) -> None:
        self._inner = inner

    def get(self, name: str) -> bytes | None:
        key = self._inner.get(name)
        if key is None:
            time.sleep(0.5)
        return key

    def put_if_absent(self, name: str, value: bytes) -> bytes:
        return self._inner.put_if_absent(name, value)

    def delete(self, name: str) -> None:
        self._inner.delete(name)

    def ensure_memory_only(self) -> None:
        self._inner.ensure_memory_only()


def test_uploads_that_all_find_the_key_lost_seal_once_and_share_a_fresh_bucket(
    database: Database, tmp_path: Path
) -> None:
    """A key store that restarted: every upload racing into the keyless bucket is stored."""
    store = FileBlobStore(tmp_path / "blobs")
    policy = load_policy("demo")
    keys = _SlowToMiss(keys_for(database))

    def upload(learner: str) -> None:
        store_clip(
            database=database,
            store=store,
            policy=policy,
            consent=Consent(learner, "speech-research-v1", age=30, child=False),
            exercise_id="digit-3",
            clip=SanitizedClip(
                learner.encode(),  # a recording of its own, as far as the bucket can tell
                duration_s=1.0,
                sample_rate=16000,
                loudness_dbfs=-20.0,
                source_sample_rate=16000,
                samples_digest=learner.encode(),
                fingerprint=b"",
            ),
            keys=keys,
        )

    upload("learner-first")
    with database.session() as session:
        lost = session.execute(sa.select(Bucket.id)).scalar_one()
    keys.delete(key_name(lost))

    barrier = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def racing_upload(learner: str) -> None:
        barrier.wait()
        try:
            upload(learner)
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=racing_upload, args=(f"learner-{n}",)) for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    with database.session() as session:
        states = {row.id: row.state for row in session.execute(sa.select(Bucket.id, Bucket.state))}
        learners = sa.func.count(sa.distinct(PendingClip.contributor_tag))
        per_bucket = {
            row.bucket_id: row.learners
            for row in session.execute(
                sa.select(PendingClip.bucket_id, learners.label("learners")).group_by(
                    PendingClip.bucket_id
                )
            )
        }
    fresh = [bucket_id for bucket_id, state in states.items() if state == "open"]
    assert states[lost] == "sealed"
    assert len(states) == 2
    assert len(fresh) == 1
    assert per_bucket == {lost: 1, fresh[0]: THREADS}
    assert len(list(store.list("pending/"))) == 1 + THREADS
