"""A big bucket is released in batches: memory does not grow with the bucket."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aggregate.buckets import pending_object_key
from aggregate.release import release_ready_buckets
from aggregate.tables import Bucket, PendingClip
from core.db import Database
from core.ids import new_id, new_secret
from core.storage import BlobStore, open_store
from policies.policy import load_policy
from tests.aggregate.conftest import ClipSource


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'chorus.db'}")
    db.upgrade()
    yield db
    db.dispose()


def _seed_one_bucket(database: Database, store: BlobStore, clips: int, data: bytes) -> None:
    bucket_id = new_id()
    rows = []
    for _ in range(clips):
        key = pending_object_key()
        store.put(key, data)
        rows.append({"id": new_id(), "bucket_id": bucket_id, "contributor_tag": new_id() * 2,
                     "slot": 0, "object_key": key, "duration_s": 0.5, "sample_rate": 8000,
                     "loudness_dbfs": -20.0})
    with database.session() as session:
        session.add(Bucket(id=bucket_id, exercise_id=f"big-{clips}", state="open",
                           bucket_key=new_secret(32), opened_cycle=0))
        session.flush()
        session.execute(sa.insert(PendingClip), rows)


def _peak_release_memory(database: Database, store: BlobStore) -> tuple[int, int]:
    tracemalloc.start()
    try:
        (outcome,) = release_ready_buckets(database, store, load_policy("demo"), batch_size=250)
        return outcome.clip_count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _peaks(tmp_path: Path, fsdd_flac: ClipSource, sizes: tuple[int, ...]) -> list[int]:
    data = fsdd_flac(2, "lucas", 3).data
    peaks = []
    for size in sizes:
        database = Database(f"sqlite:///{tmp_path / f'{size}.db'}")
        database.upgrade()
        store = open_store(f"file://{tmp_path / f'blobs-{size}'}")
        _seed_one_bucket(database, store, size, data)
        clips, peak = _peak_release_memory(database, store)
        database.dispose()
        assert clips == size
        assert list(store.list("pending/")) == []
        peaks.append(peak)
    return peaks


def test_peak_memory_does_not_grow_with_the_bucket(tmp_path: Path, fsdd_flac: ClipSource) -> None:
    small, large = _peaks(tmp_path, fsdd_flac, (500, 3000))
    assert large < small * 1.5, (small, large)


@pytest.mark.slow
def test_a_bucket_of_100000_clips(tmp_path: Path, fsdd_flac: ClipSource) -> None:
    (peak,) = _peaks(tmp_path, fsdd_flac, (100_000,))
    assert peak < 64 * 2**20, peak
