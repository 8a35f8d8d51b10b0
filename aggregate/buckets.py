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

from aggregate.tables import Bucket, PendingClip, ReleaseCycle
from core.errors import ContributionLimit
from core.ids import new_id, new_secret

PENDING_PREFIX = "pending/"
# The Core table, for the upload's INSERT (the ORM's bulk path costs more than the statement).
_PENDING_TABLE = cast(sa.Table, PendingClip.__table__)


def pending_object_key() -> str:
    """A random, non-time-ordered object name in the pending prefix (P4)."""
    return f"{PENDING_PREFIX}{new_id()}.flac"


def contributor_tag(bucket_key: bytes, learner_id: str) -> str:
    return hmac.new(bucket_key, learner_id.encode("utf-8"), hashlib.sha256).hexdigest()


def current_cycle(session: Session) -> int:
    row = session.get(ReleaseCycle, 1)
    return row.current if row is not None else 0


def get_open_bucket(session: Session, exercise_id: str) -> Bucket | None:
    """The exercise's open bucket; on PostgreSQL its row stays share-locked until commit, so a
    release cannot claim the bucket while this upload is still adding to it (P6)."""
    return session.execute(
        sa.select(Bucket)
        .where(Bucket.exercise_id == exercise_id, Bucket.state == "open")
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


class _BucketClosed(Exception):
    """The bucket left ``open`` while a clip was being added; the clip goes to a fresh one."""


def _still_open(session: Session, bucket_id: str) -> bool:
    state = session.execute(sa.select(Bucket.state).where(Bucket.id == bucket_id)).scalar_one()
    return state == "open"


def get_or_open_bucket(session: Session, exercise_id: str) -> Bucket:
    """The exercise's open bucket, opened now (with a fresh key) if there is none.

    Two uploads racing to open the same exercise's bucket meet the partial unique index; the
    loser reads the winner's bucket.
    """
    bucket = get_open_bucket(session, exercise_id)
    if bucket is not None:
        return bucket
    try:
        with session.begin_nested():
            bucket = Bucket(
                exercise_id=exercise_id,
                state="open",
                bucket_key=new_secret(32),
                opened_cycle=current_cycle(session),
            )
            session.add(bucket)
        return bucket
    except IntegrityError:
        existing = get_open_bucket(session, exercise_id)
        if existing is None:
            raise
        return existing


@dataclass(frozen=True)
class ClipFacts:
    """What the pipeline knows of a sanitized clip: nothing about who or when."""

    object_key: str
    duration_s: float
    sample_rate: int
    loudness_dbfs: float


def add_pending_clip(
    session: Session,
    *,
    exercise_id: str,
    learner_id: str,
    clip: ClipFacts,
    max_clips_per_contributor: int,
) -> None:
    """Record a stored clip in its exercise's open bucket, or raise ContributionLimit.

    After the insert the bucket's state is read again inside the writing transaction: if a
    release claimed the bucket meanwhile (possible on SQLite, which has no FOR SHARE), the
    insert is undone and the clip joins the exercise's next open bucket instead.
    """
    for _attempt in range(5):
        # The common case, an open bucket, as one plain row (share-locked on PostgreSQL like
        # ``get_open_bucket``); opening a bucket takes the ORM path.
        found = session.execute(
            sa.select(Bucket.id, Bucket.bucket_key)
            .where(Bucket.exercise_id == exercise_id, Bucket.state == "open")
            .with_for_update(read=True)
        ).first()
        if found is None:
            bucket = get_or_open_bucket(session, exercise_id)
            bucket_id, bucket_key = bucket.id, bucket.bucket_key
        else:
            bucket_id, bucket_key = found
        assert bucket_key is not None
        tag = contributor_tag(bucket_key, learner_id)
        try:
            if _insert_pending(
                session,
                bucket_id=bucket_id,
                tag=tag,
                clip=clip,
                max_clips_per_contributor=max_clips_per_contributor,
            ):
                return
        except _BucketClosed:
            continue
    raise ContributionLimit()


def _insert_pending(
    session: Session, *, bucket_id: str, tag: str, clip: ClipFacts, max_clips_per_contributor: int
) -> bool:
    for _attempt in range(3):
        used = session.execute(
            sa.select(sa.func.count())
            .select_from(PendingClip)
            .where(PendingClip.bucket_id == bucket_id, PendingClip.contributor_tag == tag)
        ).scalar_one()
        if used >= max_clips_per_contributor:
            raise ContributionLimit()
        try:
            with session.begin_nested():
                # A plain INSERT: no unit-of-work flush for a row nothing reads back.
                session.execute(
                    sa.insert(_PENDING_TABLE).values(
                        id=new_id(),
                        bucket_id=bucket_id,
                        contributor_tag=tag,
                        slot=used,
                        object_key=clip.object_key,
                        duration_s=clip.duration_s,
                        sample_rate=clip.sample_rate,
                        loudness_dbfs=clip.loudness_dbfs,
                    )
                )
                if not _still_open(session, bucket_id):
                    raise _BucketClosed()
            return True
        except IntegrityError:
            continue
    return False


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
