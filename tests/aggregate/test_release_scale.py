"""A big bucket is released in batches: the job's memory does not grow with the bucket.

The store here keeps no bytes (it only counts), so what tracemalloc sees is the release job's
own memory: rows, plan, statistics and manifest streaming.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import pytest
import sqlalchemy as sa

from aggregate.pending import PendingFacts
from aggregate.release import release_ready_buckets
from aggregate.tables import Bucket, PendingClip
from core.db import Database
from core.ids import new_id
from core.sealing import Sealer
from policies.policy import load_policy
from tests.keys import catalog_exercise, keys_for
from tests.pending import bulk_row, keyed_bucket
from tests.stores import StoreDouble


class CountingStore(StoreDouble):
    """A store double that remembers only how many objects it read, wrote and deleted."""

    CLIP = b"fLaC" + bytes(60)

    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer  # pending clips are stored sealed: each is sealed when read
        self.copies = 0
        self.deletes = 0
        self.shards = 0
        self.manifest_bytes = 0

    def get(self, key: str) -> bytes:
        self.copies += 1
        return self.sealer.seal_blob(self.CLIP, record=key)

    def delete(self, key: str) -> None:
        self.deletes += 1

    def delete_many(self, keys: Sequence[str]) -> None:
        self.deletes += len(keys)

    def put_file(self, key: str, source: BinaryIO) -> None:
        if key.endswith(".tar"):
            self.shards += 1
        if key.endswith("manifest.json"):
            self.manifest_bytes = os.fstat(source.fileno()).st_size

    def exists(self, key: str) -> bool:
        return True

    def list(self, prefix: str) -> Iterator[str]:
        return iter([])  # every copy is backed by its row: nothing stray to find


def _release_one_bucket(tmp_path: Path, clips: int) -> tuple[CountingStore, int]:
    database = Database(f"sqlite:///{tmp_path / f'{clips}.db'}")
    database.upgrade()
    bucket_id = new_id()
    sealer = keyed_bucket(database, bucket_id)
    facts = PendingFacts(
        duration_s=0.5, sample_rate=16000, loudness_dbfs=-20.0, source_sample_rate=16000
    )
    with database.session() as session:
        session.add(Bucket(id=bucket_id, exercise_id=f"big-{clips}", state="open", opened_cycle=0))
        catalog_exercise(session, f"big-{clips}")
        session.flush()
        for start in range(0, clips, 10_000):
            session.execute(
                sa.insert(PendingClip),
                [
                    bulk_row(sealer, object_key=f"pending/{new_id()}.flac", facts=facts)
                    for _ in range(min(10_000, clips - start))
                ],
            )
    store = CountingStore(sealer)
    tracemalloc.start()
    try:
        (outcome,) = release_ready_buckets(
            database,
            store,
            load_policy("demo"),
            keys=keys_for(database),
            batch_size=500,
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        database.dispose()
    assert outcome.clip_count == clips
    assert store.copies == store.deletes == clips
    assert store.shards == -(-clips // 500)
    return store, peak


def test_peak_memory_does_not_grow_with_the_bucket(tmp_path: Path) -> None:
    small_store, small = _release_one_bucket(tmp_path, 1_000)
    large_store, large = _release_one_bucket(tmp_path, 8_000)
    assert large_store.manifest_bytes > 7 * small_store.manifest_bytes  # 8× the work …
    assert large < small * 1.5, (small, large)  # … in the same memory


@pytest.mark.slow
def test_a_bucket_of_100000_clips(tmp_path: Path) -> None:
    _store, peak = _release_one_bucket(tmp_path, 100_000)
    assert peak < 32 * 2**20, peak
