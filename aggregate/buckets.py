"""Pending buckets and keyed contributor tags.

Upholds P3: a learner id enters only ``contributor_tag`` = HMAC-SHA256(bucket key, learner id)
and is never stored; each bucket has its own random key, destroyed at release or purge, after
which its tags can no longer be linked to anyone. Upholds P6's cap: a unique (bucket, tag, slot)
constraint with slot < max_clips_per_contributor holds even under concurrent uploads.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aggregate.tables import Bucket, PendingClip
from core.errors import ContributionLimit
from core.ids import new_id, new_secret
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


# An upload's transaction runs on a plain Connection (the lean path); tests and tools may pass
# an ORM Session. Only ``execute`` and ``begin_nested`` are used, which both offer.
Executor = Session | sa.Connection


def get_open_bucket(session: Session, exercise_id: str) -> Bucket | None:
    """The exercise's open bucket; on PostgreSQL its row stays share-locked until commit, so a
    release cannot claim the bucket while this upload is still adding to it (P6)."""
    return session.execute(
        sa.select(Bucket)
        .where(Bucket.exercise_id == exercise_id, Bucket.state == "open")
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


# The upload's statements are built once: building a statement costs more than running it.
_OPEN_BUCKET = (
    sa.select(Bucket.id, Bucket.bucket_key)
    .where(Bucket.exercise_id == sa.bindparam("exercise_id"), Bucket.state == "open")
    .with_for_update(read=True)
)


def _open_bucket_row(session: Executor, exercise_id: str) -> tuple[str, bytes] | None:
    """(id, key) of the exercise's open bucket, share-locked on PostgreSQL like
    ``get_open_bucket``."""
    found = session.execute(_OPEN_BUCKET, {"exercise_id": exercise_id}).first()
    if found is None or found.bucket_key is None:
        return None
    return found.id, found.bucket_key


def open_bucket_for(session: Executor, exercise_id: str) -> tuple[str, bytes]:
    """(id, key) of the exercise's open bucket, opened now (with a fresh key) if there is none.

    Two uploads racing to open the same exercise's bucket meet the partial unique index; the
    loser reads the winner's bucket.
    """
    found = _open_bucket_row(session, exercise_id)
    if found is not None:
        return found
    bucket_id, bucket_key = new_id(), new_secret(32)
    try:
        with session.begin_nested():
            session.execute(
                sa.insert(_BUCKET_TABLE).values(
                    id=bucket_id,
                    exercise_id=exercise_id,
                    state="open",
                    bucket_key=bucket_key,
                    opened_cycle=current_cycle(session),
                )
            )
        return bucket_id, bucket_key
    except IntegrityError:
        found = _open_bucket_row(session, exercise_id)
        if found is None:
            raise
        return found


def get_or_open_bucket(session: Session, exercise_id: str) -> Bucket:
    """The exercise's open bucket as an ORM object, opened now if there is none."""
    bucket_id, _key = open_bucket_for(session, exercise_id)
    bucket = session.get(Bucket, bucket_id, populate_existing=True)
    assert bucket is not None
    return bucket


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
) -> None:
    """Record a stored clip in its exercise's open bucket, or raise ContributionLimit.

    Must run in a writing transaction (``Database.connection(write=True)`` or
    ``session(write=True)``). The bucket cannot be claimed by a release between the read of
    its row and the insert: SQLite's writers take the database's write lock at BEGIN, and on
    PostgreSQL the bucket row is share-locked until commit. The slot is counted and taken in
    one ``INSERT … SELECT``; on PostgreSQL two uploads of one learner may still count the
    same slot, and the loser of the unique (bucket, tag, slot) constraint counts again.
    """
    bucket_id, bucket_key = open_bucket_for(session, exercise_id)
    tag = contributor_tag(bucket_key, learner_id)
    row = {
        "id": new_id(),
        "bucket_id": bucket_id,
        "tag": tag,
        "object_key": clip.object_key,
        "duration_s": clip.duration_s,
        "sample_rate": clip.sample_rate,
        "loudness_dbfs": clip.loudness_dbfs,
        "max_slots": max_clips_per_contributor,
    }
    if not _is_postgres(session):
        # Writers are serialized: no other upload can take a slot between count and insert.
        inserted = len(session.execute(_INSERT_IN_FREE_SLOT, row).all())
    else:
        inserted = 0
        for _attempt in range(max_clips_per_contributor + 1):
            try:
                with session.begin_nested():
                    inserted = len(session.execute(_INSERT_IN_FREE_SLOT, row).all())
                break
            except IntegrityError:
                continue
    if inserted != 1:
        raise ContributionLimit()


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
        )
        .select_from(table)
        .where(
            table.c.bucket_id == sa.bindparam("bucket_id"),
            table.c.contributor_tag == sa.bindparam("tag"),
        )
        .having(used < sa.bindparam("max_slots", type_=sa.Integer))
    )
    columns = ["id", "bucket_id", "contributor_tag", "slot", "object_key"]
    columns += ["duration_s", "sample_rate", "loudness_dbfs"]
    # RETURNING tells whether a row went in (psycopg reports no rowcount for INSERT … SELECT).
    return sa.insert(table).from_select(columns, free_slot).returning(table.c.slot)


_INSERT_IN_FREE_SLOT = _insert_in_free_slot()


def distinct_contributors(session: Session, bucket_id: str) -> int:
    return session.execute(
        sa.select(sa.func.count(sa.distinct(PendingClip.contributor_tag))).where(
            PendingClip.bucket_id == bucket_id
        )
    ).scalar_one()


def withdraw_learner(session: Session, learner_id: str) -> list[str]:
    """Delete the learner's pending rows in every open bucket (P9).

    Returns the object keys to delete from the store once the transaction has committed.
    """
    object_keys: list[str] = []
    buckets = session.execute(
        sa.select(Bucket.id, Bucket.bucket_key).where(Bucket.state == "open")
    ).all()
    for bucket_id, bucket_key in buckets:
        if bucket_key is None:
            continue
        tag = contributor_tag(bucket_key, learner_id)
        keys = (
            session.execute(
                sa.delete(PendingClip)
                .where(PendingClip.bucket_id == bucket_id, PendingClip.contributor_tag == tag)
                .returning(PendingClip.object_key)
            )
            .scalars()
            .all()
        )
        object_keys.extend(keys)
    return object_keys
