"""Pending buckets and keyed contributor tags.

Upholds P3: a learner id enters only ``contributor_tag`` = HMAC-SHA256(bucket key, learner id)
and is never stored. Each bucket has its own random key, held only in memory
(``core.keystore``: tmpfs or a Redis without persistence), never in the database, so no copy of
the disk, WAL, dead tuple or backup can link a tag to anyone. A bucket whose key is lost
(reboot, Redis flush) is **sealed**: it takes no new clips, and since its sealed clips can no
longer be opened by anyone (``aggregate.pending``), the next release cycle purges it with an
audit entry (reason ``key_lost``); the next upload opens a fresh bucket with a fresh key. The
bucket is sealed in a short transaction of its own, never under an upload's share lock (on
PostgreSQL two uploads that each held the row share-locked and then tried to seal it would
deadlock). The key is deleted when the bucket is released or purged. Upholds P6's cap: a unique
(bucket, tag, slot) constraint with slot < max_clips_per_contributor holds even under
concurrent uploads.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aggregate.tables import Bucket, BucketState, PendingClip, ReleasedClip
from core.db import Database, Executor, limit_lock_wait, retrying_unique_races, with_row_lock
from core.errors import ContributionLimit, Unavailable
from core.ids import new_id, new_secret
from core.keystore import KeyStore
from core.sealing import Sealer
from policies.audit import current_cycle

PENDING_PREFIX = "pending/"
# The sealed field of a pending row that holds its release plan (``aggregate.pending``).
PLAN_FIELD = "plan"
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


# The upload's statements are built once: building a statement costs more than running it.
_OPEN_BUCKET = with_row_lock(
    sa.select(Bucket.id).where(
        Bucket.exercise_id == sa.bindparam("exercise_id"), Bucket.state == BucketState.OPEN
    ),
    shared=True,
)
_SEAL = (
    sa.update(_BUCKET_TABLE)
    .where(
        _BUCKET_TABLE.c.id == sa.bindparam("bucket_id"),
        _BUCKET_TABLE.c.state == BucketState.OPEN,
    )
    .values(state=BucketState.SEALED)
)
_FIND_OPEN = sa.select(Bucket.id).where(
    Bucket.exercise_id == sa.bindparam("exercise_id"), Bucket.state == BucketState.OPEN
)
_OPEN_ATTEMPTS = 3
# How long a release or a purge waits for uploads holding a bucket row shared.
_BUCKET_LOCK_WAIT_S = 30


def key_name(bucket_id: str) -> str:
    return f"bucket:{bucket_id}"


class BucketChanged(Exception):
    """The bucket an upload sealed its clip for is no longer its exercise's open bucket (a
    release claimed it, or its key was lost): the upload seals again for the new one."""


@dataclass(frozen=True)
class OpenBucket:
    id: str
    key: bytes


_SEAL_ATTEMPTS = 3


def current_open_bucket(database: Database, exercise_id: str, *, keys: KeyStore) -> OpenBucket:
    """The exercise's open bucket and its key, opened now (with a fresh key) if there is none.

    An open bucket whose key is gone (reboot, Redis flush) is sealed in a short transaction of
    its own and a fresh one opens: its clips can no longer be opened by anyone, so it is purged
    by the next release cycle (``aggregate.retention.purge_keyless_buckets``).
    """
    for _attempt in range(_SEAL_ATTEMPTS):
        with database.connection() as connection:
            bucket_id = connection.execute(_FIND_OPEN, {"exercise_id": exercise_id}).scalar()
        if bucket_id is None:
            with database.connection(write=True) as connection:
                opened_id, opened_key = open_bucket_for(connection, exercise_id, keys=keys)
            return OpenBucket(opened_id, opened_key)
        key = keys.get(key_name(bucket_id))
        if key is not None:
            return OpenBucket(bucket_id, key)
        with database.connection(write=True) as connection:
            connection.execute(_SEAL, {"bucket_id": bucket_id})
    raise Unavailable("the exercise's bucket kept losing its key; try again")


def lock_open_bucket(session: Executor, exercise_id: str, *, expected: str) -> None:
    """In the upload's transaction: share-lock the exercise's open bucket row, which must be
    ``expected`` (else ``BucketChanged``). While it is held (until commit) no release can
    claim the bucket (P6): SQLite's writers hold the database's write lock from BEGIN."""
    bucket_id = session.execute(_OPEN_BUCKET, {"exercise_id": exercise_id}).scalar()
    if bucket_id != expected:
        raise BucketChanged()


def open_bucket_for(session: Executor, exercise_id: str, *, keys: KeyStore) -> tuple[str, bytes]:
    """(id, key) of the exercise's open bucket, opened now (with a fresh key) if there is none.

    Two uploads racing to open the same exercise's bucket meet the partial unique index; the
    loser reads the winner's bucket, whose key the winner stored before inserting. An open
    bucket whose key is gone is sealed here, in the caller's transaction, and a fresh one opens.
    """
    for _attempt in range(_OPEN_ATTEMPTS):
        bucket_id = session.execute(_OPEN_BUCKET, {"exercise_id": exercise_id}).scalar()
        if bucket_id is not None:
            key = keys.get(key_name(bucket_id))
            if key is not None:
                return bucket_id, key
            session.execute(_SEAL, {"bucket_id": bucket_id})
            continue
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


def insert_pending_row(session: Executor, row: dict[str, object]) -> bool:
    """Insert a pending row (``aggregate.pending``) in the next free slot of its contributor,
    or raise ContributionLimit. Returns False, inserting nothing, when the row's upload request
    (``request_digest``) is in the bucket already: a retry of an upload that was stored.

    Must run in the upload's writing transaction, after ``lock_open_bucket``. The slot is
    counted and taken in one ``INSERT … SELECT``; where writers run side by side (PostgreSQL)
    two uploads of one learner may still count the same slot, and the loser of the unique
    (bucket, tag, slot) constraint counts again; a retry racing its own request loses the
    unique request index, then finds the row (``retrying_unique_races``).
    """
    digest = row.get("request_digest")
    bucket_id = str(row["bucket_id"])

    def take_free_slot() -> bool:
        if digest is not None and holds_request(session, bucket_id, str(digest)):
            return False
        if len(session.execute(_INSERT_IN_FREE_SLOT, row).all()) != 1:
            raise ContributionLimit()
        return True

    attempts = int(str(row["max_slots"])) + 2
    inserted = retrying_unique_races(session, take_free_slot, attempts=attempts)
    if inserted is None:
        raise ContributionLimit()
    return inserted


_HOLDS_REQUEST = sa.select(_PENDING_TABLE.c.id).where(
    _PENDING_TABLE.c.bucket_id == sa.bindparam("bucket_id"),
    _PENDING_TABLE.c.request_digest == sa.bindparam("digest"),
)


def holds_request(session: Executor, bucket_id: str, digest: str) -> bool:
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
        if holds_request(session, bucket_id, request_digest(bucket_key, request_id)):
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
        "recording_tag": "",
        "sealed_facts": b"",
        "request_digest": None,
        "max_slots": 0,  # count(*) < 0 never holds: no row goes in
    }
    connection.execute(_INSERT_IN_FREE_SLOT, nothing).all()
    holds_request(connection, "", "")


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
            sa.bindparam("recording_tag", type_=sa.String),
            sa.bindparam("sealed_facts", type_=sa.LargeBinary),
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
    columns += ["recording_tag", "sealed_facts", "request_digest"]
    # RETURNING tells whether a row went in (psycopg reports no rowcount for INSERT … SELECT).
    return sa.insert(table).from_select(columns, free_slot).returning(table.c.slot)


_INSERT_IN_FREE_SLOT = _insert_in_free_slot()


def lock_bucket(session: Session, bucket_id: str) -> Bucket | None:
    """The bucket row, locked for the transaction: waits for uploads holding it shared, for
    ``_BUCKET_LOCK_WAIT_S`` at most (then ``DatabaseBusy`` at the transaction's edge)."""
    limit_lock_wait(session, _BUCKET_LOCK_WAIT_S)
    return session.execute(
        with_row_lock(sa.select(Bucket).where(Bucket.id == bucket_id))
    ).scalar_one_or_none()


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


def _planned_ids(session: Session, sealer: Sealer, tags: set[str]) -> list[str]:
    """The released ids planned for pending rows whose plan tags are ``tags``: found among
    the releasing bucket's planned clips, since a keyed digest cannot be turned back."""
    if not tags:
        return []
    release_id = session.execute(
        sa.select(Bucket.release_id).where(Bucket.id == sealer.bucket_id)
    ).scalar()
    if release_id is None:
        return []
    planned = session.execute(
        sa.select(ReleasedClip.id).where(ReleasedClip.release_id == release_id)
    ).scalars()
    return [clip_id for clip_id in planned if sealer.digest(clip_id, field=PLAN_FIELD) in tags]


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
    buckets = (
        session.execute(
            sa.select(Bucket.id).where(Bucket.state.in_(_WITHDRAWABLE)).order_by(Bucket.id)
        )
        .scalars()
        .all()
    )
    for bucket_id in buckets:
        bucket_key = keys.get(key_name(bucket_id))
        if bucket_key is None:
            continue
        session.execute(with_row_lock(sa.select(Bucket.id).where(Bucket.id == bucket_id)))
        tag = contributor_tag(bucket_key, learner_id)
        removed = session.execute(
            sa.delete(PendingClip)
            .where(PendingClip.bucket_id == bucket_id, PendingClip.contributor_tag == tag)
            .returning(PendingClip.object_key, PendingClip.plan_tag)
        ).all()
        object_keys.extend(row.object_key for row in removed)
        planned = _planned_ids(
            session,
            Sealer(bucket_key, bucket_id=bucket_id),
            {row.plan_tag for row in removed if row.plan_tag is not None},
        )
        if planned:
            object_keys.extend(
                session.execute(
                    sa.delete(ReleasedClip)
                    .where(ReleasedClip.id.in_(planned))
                    .returning(ReleasedClip.object_key)
                ).scalars()
            )
    return object_keys
