"""Pending buckets and keyed contributor tags.

Upholds P3: a learner id enters only ``contributor_tag`` = HMAC-SHA256(bucket key, learner id)
and is never stored. Each bucket has its own random key, held only in memory
(``core.keystore``: tmpfs or a Redis without persistence), never in the database, so no copy of
the disk, WAL, dead tuple or backup can link a tag to anyone. A bucket whose key is lost
(reboot, Redis flush) is **sealed**: it takes no new clips, is still released if its tags reach
k, or retired by retention; the next upload opens a fresh bucket with a fresh key. Its clips
can no longer be found by learner, exactly like released ones. An upload that finds its
bucket's key lost ends its transaction before the bucket is sealed, in a transaction of its own,
and then runs again (``run_upload_transaction``): on PostgreSQL two uploads that each held the
row share-locked and then tried to seal it would deadlock. The key is deleted when the
bucket is released or purged. Upholds P6's cap: a unique (bucket, tag, slot) constraint with
slot < max_clips_per_contributor holds even under concurrent uploads.

An upload sent with an Idempotency-Key is stored once: its row carries ``request_digest`` =
HMAC(bucket key, request id) (``core.idempotency``), written in the row's own transaction and
unique per bucket, so a retry whose first answer was lost, or whose key store entry was never
completed, finds it there and stores nothing (``add_pending_clip`` returns False). Keyed like
the tag, it links to no one once the bucket's key is gone.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aggregate.tables import Bucket, BucketState, PendingClip, ReleasedClip
from core.db import Database
from core.errors import ContributionLimit, Unavailable
from core.ids import new_id, new_secret
from core.keystore import KeyStore
from policies.audit import current_cycle

PENDING_PREFIX = "pending/"
# The Core table, for the upload's INSERT (the ORM's bulk path costs more than the statement).
_PENDING_TABLE = cast(sa.Table, PendingClip.__table__)
_BUCKET_TABLE = cast(sa.Table, Bucket.__table__)


def pending_object_key() -> str:
    """A random, non-time-ordered object name in the pending prefix (P4)."""
    return f"{PENDING_PREFIX}{new_id()}.flac"


def contributor_tag(bucket_key: bytes, learner_id: str) -> str:
    return hmac.new(bucket_key, learner_id.encode("utf-8"), hashlib.sha256).hexdigest()


def request_digest(bucket_key: bytes, request_id: bytes) -> str:
    """The keyed digest of an upload's Idempotency-Key request kept on its row."""
    return hmac.new(bucket_key, b"upload-request\0" + request_id, hashlib.sha256).hexdigest()


# An upload's transaction runs on a plain Connection (the lean path); tests and tools may pass
# an ORM Session. Only ``execute`` and ``begin_nested`` are used, which both offer.
Executor = Session | sa.Connection


# The upload's statements are built once: building a statement costs more than running it.
_OPEN_BUCKET = (
    sa.select(Bucket.id)
    .where(Bucket.exercise_id == sa.bindparam("exercise_id"), Bucket.state == BucketState.OPEN)
    .with_for_update(read=True)
)
_SEAL = (
    sa.update(_BUCKET_TABLE)
    .where(
        _BUCKET_TABLE.c.id == sa.bindparam("bucket_id"),
        _BUCKET_TABLE.c.state == BucketState.OPEN,
    )
    .values(state=BucketState.SEALED)
)
_OPEN_ATTEMPTS = 3


def key_name(bucket_id: str) -> str:
    return f"bucket:{bucket_id}"


class BucketKeyLost(Exception):
    """The exercise's open bucket has no key any more: the upload's transaction must end
    before the bucket is sealed (``run_upload_transaction`` does both)."""

    def __init__(self, bucket_id: str) -> None:
        super().__init__(f"bucket {bucket_id} lost its key")
        self.bucket_id = bucket_id


T = TypeVar("T")


def run_upload_transaction(database: Database, upload: Callable[[sa.Connection], T]) -> T:
    """``upload`` (which calls ``add_pending_clip``) in a writing transaction; when it finds
    its bucket's key lost, the bucket is sealed in a transaction of its own and ``upload``
    runs again, in the fresh bucket.

    The upload's transaction holds the bucket row share-locked on PostgreSQL; sealing under
    that lock deadlocks with a second upload doing the same, so the seal waits until the
    lock is gone. The rolled-back attempt stored nothing, so nothing acknowledged is lost.
    """
    for _attempt in range(_OPEN_ATTEMPTS):
        try:
            with database.connection(write=True) as connection:
                return upload(connection)
        except BucketKeyLost as lost:
            with database.connection(write=True) as connection:
                connection.execute(_SEAL, {"bucket_id": lost.bucket_id})
    raise Unavailable("the exercise's bucket kept losing its key; try again")


def open_bucket_for(session: Executor, exercise_id: str, *, keys: KeyStore) -> tuple[str, bytes]:
    """(id, key) of the exercise's open bucket, opened now (with a fresh key) if there is none.

    The open bucket's row stays share-locked on PostgreSQL until commit, so a release cannot
    claim it while this upload is still adding to it (P6). An open bucket whose key is gone
    raises ``BucketKeyLost``: it is sealed once this transaction has ended. Two uploads racing
    to open the same exercise's bucket meet the partial unique index; the loser reads the
    winner's bucket, whose key the winner stored before inserting.
    """
    for _attempt in range(_OPEN_ATTEMPTS):
        bucket_id = session.execute(_OPEN_BUCKET, {"exercise_id": exercise_id}).scalar()
        if bucket_id is not None:
            key = keys.get(key_name(bucket_id))
            if key is None:
                raise BucketKeyLost(bucket_id)
            return bucket_id, key
        bucket_id = new_id()
        key = keys.put_if_absent(key_name(bucket_id), new_secret(32))
        try:
            with session.begin_nested():
                session.execute(
                    sa.insert(_BUCKET_TABLE).values(
                        id=bucket_id,
                        exercise_id=exercise_id,
                        state=BucketState.OPEN,
                        opened_cycle=current_cycle(session),
                    )
                )
            return bucket_id, key
        except IntegrityError:
            keys.delete(key_name(bucket_id))
    raise Unavailable("the exercise's bucket kept changing; try again")


@dataclass(frozen=True)
class ClipFacts:
    """What the pipeline knows of a sanitized clip: nothing about who or when."""

    object_key: str
    duration_s: float
    sample_rate: int
    loudness_dbfs: float


def add_pending_clip(
    session: Executor,
    *,
    exercise_id: str,
    learner_id: str,
    clip: ClipFacts,
    max_clips_per_contributor: int,
    keys: KeyStore,
    request_id: bytes | None = None,
) -> bool:
    """Record a stored clip in its exercise's open bucket, or raise ContributionLimit.

    With ``request_id`` (an Idempotency-Key upload), a row of the same request already in the
    bucket means it was stored before: nothing is added and False is returned.

    Must run in a writing transaction: ``run_upload_transaction``, which also seals a bucket
    whose key was lost (``BucketKeyLost``), or ``session(write=True)``. The bucket cannot be
    claimed by a release between the read of its row and the insert: SQLite's writers take the
    database's write lock at BEGIN, and on PostgreSQL the bucket row is share-locked until
    commit. The slot is counted and taken in one ``INSERT … SELECT``; on PostgreSQL two uploads
    of one learner may still count the same slot, and the loser of the unique (bucket, tag,
    slot) constraint counts again.
    """
    bucket_id, bucket_key = open_bucket_for(session, exercise_id, keys=keys)
    tag = contributor_tag(bucket_key, learner_id)
    digest = request_digest(bucket_key, request_id) if request_id is not None else None
    row = {
        "id": new_id(),
        "bucket_id": bucket_id,
        "tag": tag,
        "object_key": clip.object_key,
        "duration_s": clip.duration_s,
        "sample_rate": clip.sample_rate,
        "loudness_dbfs": clip.loudness_dbfs,
        "request_digest": digest,
        "max_slots": max_clips_per_contributor,
    }
    if not _is_postgres(session):
        # Writers are serialized: no other upload can take a slot between count and insert.
        if digest is not None and _holds_request(session, bucket_id, digest):
            return False
        inserted = len(session.execute(_INSERT_IN_FREE_SLOT, row).all())
    else:
        inserted = 0
        for _attempt in range(max_clips_per_contributor + 2):
            # A retry of this request racing it loses the unique index, then finds its row.
            if digest is not None and _holds_request(session, bucket_id, digest):
                return False
            try:
                with session.begin_nested():
                    inserted = len(session.execute(_INSERT_IN_FREE_SLOT, row).all())
                break
            except IntegrityError:
                continue
    if inserted != 1:
        raise ContributionLimit()
    return True


_HOLDS_REQUEST = sa.select(_PENDING_TABLE.c.id).where(
    _PENDING_TABLE.c.bucket_id == sa.bindparam("bucket_id"),
    _PENDING_TABLE.c.request_digest == sa.bindparam("digest"),
)


def _holds_request(session: Executor, bucket_id: str, digest: str) -> bool:
    found = session.execute(_HOLDS_REQUEST, {"bucket_id": bucket_id, "digest": digest}).first()
    return found is not None


def find_stored_request(
    session: Executor, *, exercise_id: str, request_id: bytes, keys: KeyStore
) -> bool:
    """Whether a bucket of the exercise not yet released holds this Idempotency-Key request.

    Buckets whose key is lost are not searched: no one can tell their rows apart any more.
    """
    buckets = session.execute(
        sa.select(Bucket.id).where(
            Bucket.exercise_id == exercise_id, Bucket.state.in_(_WITHDRAWABLE)
        )
    ).scalars()
    for bucket_id in buckets.all():
        bucket_key = keys.get(key_name(bucket_id))
        if bucket_key is None:
            continue
        if _holds_request(session, bucket_id, request_digest(bucket_key, request_id)):
            return True
    return False


def prepare_upload_statements(connection: sa.Connection) -> None:
    """Run the upload's statements once, matching nothing, so a new process has them compiled
    (SQLAlchemy caches a statement's compiled form per engine at its first execution)."""
    connection.execute(_OPEN_BUCKET, {"exercise_id": ""}).scalar()
    nothing = {
        "id": "",
        "bucket_id": "",
        "tag": "",
        "object_key": "",
        "duration_s": 0.0,
        "sample_rate": 0,
        "loudness_dbfs": 0.0,
        "request_digest": None,
        "max_slots": 0,  # count(*) < 0 never holds: no row goes in
    }
    connection.execute(_INSERT_IN_FREE_SLOT, nothing).all()
    _holds_request(connection, "", "")


def _is_postgres(session: Executor) -> bool:
    bind = session.get_bind() if isinstance(session, Session) else session
    return bind.dialect.name == "postgresql"


def _insert_in_free_slot() -> sa.Insert:
    """One row in the next free slot of (bucket, tag), or no row when the cap is reached."""
    table = _PENDING_TABLE
    used = sa.func.count()
    free_slot = (
        sa.select(
            sa.bindparam("id", type_=sa.String),
            sa.bindparam("bucket_id", type_=sa.String),
            sa.bindparam("tag", type_=sa.String),
            used,
            sa.bindparam("object_key", type_=sa.String),
            sa.bindparam("duration_s", type_=sa.Float),
            sa.bindparam("sample_rate", type_=sa.Integer),
            sa.bindparam("loudness_dbfs", type_=sa.Float),
            sa.bindparam("request_digest", type_=sa.String),
        )
        .select_from(table)
        .where(
            table.c.bucket_id == sa.bindparam("bucket_id"),
            table.c.contributor_tag == sa.bindparam("tag"),
        )
        .having(used < sa.bindparam("max_slots", type_=sa.Integer))
    )
    columns = ["id", "bucket_id", "contributor_tag", "slot", "object_key"]
    columns += ["duration_s", "sample_rate", "loudness_dbfs", "request_digest"]
    # RETURNING tells whether a row went in (psycopg reports no rowcount for INSERT … SELECT).
    return sa.insert(table).from_select(columns, free_slot).returning(table.c.slot)


_INSERT_IN_FREE_SLOT = _insert_in_free_slot()


def pending_clip_count(session: Session, bucket_id: str) -> int:
    return session.execute(
        sa.select(sa.func.count())
        .select_from(PendingClip)
        .where(PendingClip.bucket_id == bucket_id)
    ).scalar_one()


def distinct_contributors(session: Session, bucket_id: str) -> int:
    return session.execute(
        sa.select(sa.func.count(sa.distinct(PendingClip.contributor_tag))).where(
            PendingClip.bucket_id == bucket_id
        )
    ).scalar_one()


# Buckets whose pending clips a withdrawal must still find: everything not yet closed.
_WITHDRAWABLE = (BucketState.OPEN, BucketState.SEALED, BucketState.RELEASING)


def withdraw_learner(session: Session, learner_id: str, *, keys: KeyStore) -> list[str]:
    """Delete the learner's pending rows in every bucket not yet closed (P9).

    Open, sealed and releasing buckets are searched with their keys (a bucket whose key is
    lost cannot be searched by anyone: its tags link to no one). A releasing bucket's planned
    released copy of the clip goes too, so its release cannot contain it (the release re-counts
    its contributors before it finishes). Each bucket row is locked first, so an upload that
    holds it share-locked commits before the delete looks, and one that comes later sees the
    withdrawn token. Returns the object keys (pending and released copies) to delete from the
    store once the transaction has committed.
    """
    object_keys: list[str] = []
    buckets = session.execute(
        sa.select(Bucket.id).where(Bucket.state.in_(_WITHDRAWABLE)).order_by(Bucket.id)
    ).scalars().all()
    for bucket_id in buckets:
        bucket_key = keys.get(key_name(bucket_id))
        if bucket_key is None:
            continue
        session.execute(sa.select(Bucket.id).where(Bucket.id == bucket_id).with_for_update())
        tag = contributor_tag(bucket_key, learner_id)
        removed = session.execute(
            sa.delete(PendingClip)
            .where(PendingClip.bucket_id == bucket_id, PendingClip.contributor_tag == tag)
            .returning(PendingClip.object_key, PendingClip.release_clip_id)
        ).all()
        object_keys.extend(row.object_key for row in removed)
        planned = [row.release_clip_id for row in removed if row.release_clip_id is not None]
        if planned:
            object_keys.extend(
                session.execute(
                    sa.delete(ReleasedClip)
                    .where(ReleasedClip.id.in_(planned))
                    .returning(ReleasedClip.object_key)
                ).scalars()
            )
    return object_keys
