"""Seeding and reading sealed pending clips in tests, as the service does (``aggregate.pending``).

Pending audio is stored only sealed under its bucket's memory-only key: a test that wants to
see a pending clip's bytes opens it with the key from the shared test key store.
"""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa

from aggregate.buckets import key_name
from aggregate.pending import (
    PendingFacts,
    SanitizedAudio,
    open_audio,
    put_pending_clip,
    seal_facts,
)
from aggregate.tables import PendingClip
from core.db import Database
from core.ids import new_id
from core.sealing import Sealer
from core.storage import BlobStore
from ingest.audio import SanitizedClip
from tests.keys import catalog_exercise, keys_for


def seed_pending_clip(
    database: Database,
    store: BlobStore,
    *,
    exercise_id: str,
    learner_id: str,
    flac: bytes,
    duration_s: float,
    sample_rate: int,
    loudness_dbfs: float,
    source_sample_rate: int | None = None,
    max_clips_per_contributor: int = 1,
    catalog: bool = True,
) -> str:
    """What ingest does after sanitizing: seal and store the clip, record its pending row.
    The recording is told apart by its bytes' digest. Returns the pending object's key."""
    if catalog:
        with database.session(write=True) as session:
            catalog_exercise(session, exercise_id)
    key = put_pending_clip(
        database,
        store,
        keys=keys_for(database),
        exercise_id=exercise_id,
        learner_id=learner_id,
        clip=SanitizedAudio(
            flac=flac,
            facts=PendingFacts(
                duration_s=duration_s,
                sample_rate=sample_rate,
                loudness_dbfs=loudness_dbfs,
                source_sample_rate=source_sample_rate or sample_rate,
            ),
            samples_digest=hashlib.sha256(flac).digest(),
        ),
        max_clips_per_contributor=max_clips_per_contributor,
    )
    assert key is not None  # None only for a retried request_id, which a seed never has
    return key


def opened_pending_clips(database: Database, store: BlobStore) -> dict[str, bytes | None]:
    """Every pending row's object key -> its clip's bytes, opened with its bucket's key (None
    when the key or the object is gone)."""
    keys = keys_for(database)
    with database.session() as session:
        rows = session.execute(sa.select(PendingClip.bucket_id, PendingClip.object_key)).all()
    opened: dict[str, bytes | None] = {}
    for row in rows:
        key = keys.get(key_name(row.bucket_id))
        if key is None or not store.exists(row.object_key):
            opened[row.object_key] = None
            continue
        sealer = Sealer(key, bucket_id=row.bucket_id)
        opened[row.object_key] = open_audio(sealer, row.object_key, store.get(row.object_key))
    return opened


def keyed_bucket(database: Database, bucket_id: str) -> Sealer:
    """A fresh key for ``bucket_id`` in the shared test key store, and its sealer (for rows a
    test writes in bulk, straight into the table)."""
    key = keys_for(database).put_if_absent(key_name(bucket_id), secrets.token_bytes(32))
    return Sealer(key, bucket_id=bucket_id)


def bulk_row(sealer: Sealer, *, object_key: str, facts: PendingFacts) -> dict[str, object]:
    """A sealed pending row of a recording of its own, by a contributor of its own, for a bulk
    ``INSERT`` (``sa.insert(PendingClip)``)."""
    row_id = new_id()
    return {
        "id": row_id,
        "bucket_id": sealer.bucket_id,
        "contributor_tag": new_id() * 2,
        "slot": 0,
        "object_key": object_key,
        "recording_tag": new_id() * 2,
        "sealed_facts": seal_facts(sealer, row_id, facts),
    }


def seed_sanitized(
    database: Database,
    store: BlobStore,
    *,
    exercise_id: str,
    learner_id: str,
    clip: SanitizedClip,
    max_clips_per_contributor: int = 1,
) -> str:
    """``seed_pending_clip`` for a clip as ``ingest.audio.sanitize_audio`` made it."""
    return seed_pending_clip(
        database,
        store,
        exercise_id=exercise_id,
        learner_id=learner_id,
        flac=clip.flac,
        duration_s=clip.duration_s,
        sample_rate=clip.sample_rate,
        loudness_dbfs=clip.loudness_dbfs,
        source_sample_rate=clip.source_sample_rate,
        max_clips_per_contributor=max_clips_per_contributor,
    )
