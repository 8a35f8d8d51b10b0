"""Where every clip's bytes are after a release: the census of the aggregate tests."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa

from aggregate.tables import Bucket, PendingClip, ReleasedClip
from core.db import Database
from core.storage import BlobStore
from policies.context import shard_members
from tests.aggregate.clips import FlacClip
from tests.pending import opened_pending_clips


@dataclass(frozen=True)
class Census:
    """Where every clip's bytes are: pending objects, released objects, and the rows."""

    pending: Counter[str]
    released: Counter[str]
    pending_rows: int
    released_rows: int
    releasing_buckets: int

    def places(self, clip: FlacClip) -> int:
        return self.pending[clip.digest] + self.released[clip.digest]


def released_clip_bytes(store: BlobStore, prefix: str = "releases/") -> list[bytes]:
    """Every clip readable under ``prefix``: the members of every release shard, and any
    loose FLAC object."""
    clips: list[bytes] = []
    for key in store.list(prefix):
        if key.endswith(".tar"):
            clips.extend(data for _name, data in shard_members(store.get(key)))
        elif key.endswith(".flac"):
            clips.append(store.get(key))
    return clips


def take_census(database: Database, store: BlobStore) -> Census:
    # Pending clips are sealed: the census opens each with its bucket's key.
    pending = Counter(
        hashlib.sha256(data).hexdigest()
        for data in opened_pending_clips(database, store).values()
        if data is not None
    )
    released = Counter(hashlib.sha256(data).hexdigest() for data in released_clip_bytes(store))
    with database.session() as session:
        pending_rows = session.execute(
            sa.select(sa.func.count()).select_from(PendingClip)
        ).scalar_one()
        released_rows = session.execute(
            sa.select(sa.func.count()).select_from(ReleasedClip)
        ).scalar_one()
        releasing = session.execute(
            sa.select(sa.func.count()).select_from(Bucket).where(Bucket.state == "releasing")
        ).scalar_one()
    return Census(pending, released, pending_rows, released_rows, releasing)


def assert_each_released_once(census: Census, clips: list[FlacClip]) -> None:
    """Every clip is in the release prefix exactly once, and nothing is left pending."""
    for clip in clips:
        assert census.released[clip.digest] == 1, clip.name
        assert census.pending[clip.digest] == 0, clip.name
    assert census.pending_rows == 0
    assert census.releasing_buckets == 0
    assert census.released_rows == sum(census.released.values())
