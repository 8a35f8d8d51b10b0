"""Buckets, pending clips and releases.

Upholds P3 (only keyed contributor tags; the key itself is never in the database, see
``core.keystore``) and P4 (random ids, no timestamp columns: buckets count release cycles,
releases carry only a day; the pending tables are ``WITHOUT ROWID`` on SQLite, so no hidden
row number counts arrivals).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, partial_index, without_insertion_order
from core.ids import new_id


class BucketState(StrEnum):
    """``open`` takes clips; ``sealed`` lost its key and takes none, but may still be released;
    ``releasing`` is claimed by a release; ``released`` and ``purged`` are closed."""

    OPEN = "open"
    SEALED = "sealed"
    RELEASING = "releasing"
    RELEASED = "released"
    PURGED = "purged"


BUCKET_STATES = tuple(state.value for state in BucketState)
CLOSED_STATES = (BucketState.RELEASED, BucketState.PURGED)
# Buckets that hold clips waiting for k: released when they reach it, purged by retention.
PENDING_STATES = (BucketState.OPEN, BucketState.SEALED)


class Bucket(Base):
    __tablename__ = "buckets"
    __table_args__ = (
        partial_index(
            "uq_buckets_open_exercise", "exercise_id", unique=True, where="state = 'open'"
        ),
        sa.Index("ix_buckets_state", "state"),
        without_insertion_order(),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    exercise_id: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[str] = mapped_column(sa.String(16), default=BucketState.OPEN)
    opened_cycle: Mapped[int] = mapped_column(sa.Integer)
    release_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    # The release runner that holds the claim (aggregate.fencing); random, never a counter.
    claim_token: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)


class PendingClip(Base):
    __tablename__ = "pending_clips"
    # One row per (bucket, contributor, slot) with slot < max_clips_per_contributor: the unique
    # constraint enforces the contribution cap even under concurrent uploads (P6), and one row
    # per (bucket, recording) refuses the same recording twice (P6: k distinct recordings).
    # The (bucket, id) index lets a release walk a 100,000-clip bucket in keyset batches.
    # Nothing here is in the clear that a release publishes or that released audio determines:
    # the clip's facts and its release plan are sealed under the bucket's key (core.sealing).
    __table_args__ = (
        sa.UniqueConstraint("bucket_id", "contributor_tag", "slot"),
        sa.UniqueConstraint(
            "bucket_id", "recording_tag", name="uq_pending_clips_bucket_id_recording_tag"
        ),
        sa.Index("ix_pending_clips_bucket_id_id", "bucket_id", "id"),
        sa.Index("ix_pending_clips_plan_tag", "plan_tag"),
        # An upload's request is stored once per bucket, whatever a retry's timing.
        sa.Index("uq_pending_clips_request", "bucket_id", "request_digest", unique=True),
        without_insertion_order(),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    bucket_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("buckets.id", ondelete="CASCADE")
    )
    contributor_tag: Mapped[str] = mapped_column(sa.String(64))
    slot: Mapped[int] = mapped_column(sa.Integer)
    # The sealed audio's object: a random name in the pending prefix.
    object_key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    # HMAC(bucket key, SHA-256 of the canonical samples): equal only for the same recording.
    recording_tag: Mapped[str] = mapped_column(sa.String(64))
    # Duration, loudness, rates and the recording's fingerprint (aggregate.pending.PendingFacts).
    sealed_facts: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # While its bucket is releasing: a keyed digest of the fresh random id this clip is released
    # under (``core.sealing.Sealer.digest``), so a resumed release copies it under the same
    # name and finds it by that id; no one without the bucket's key can tell which released
    # clip it was. Gone with the row once the release is done.
    plan_tag: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    # HMAC(bucket key, the upload's Idempotency-Key request) when it came with one: a retry of
    # it is recognised in the row's own transaction, and links to no one once the key is gone.
    request_digest: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (sa.Index("ix_releases_exercise", "exercise_id"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    bucket_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    exercise_id: Mapped[str] = mapped_column(sa.String(200))
    language: Mapped[str | None] = mapped_column(sa.String(35), nullable=True)
    release_day: Mapped[dt.date] = mapped_column(sa.Date)
    clip_count: Mapped[int] = mapped_column(sa.Integer)
    contributor_count: Mapped[int] = mapped_column(sa.Integer)
    k_in_force: Mapped[int] = mapped_column(sa.Integer)
    policy_hash: Mapped[str] = mapped_column(sa.String(64))
    manifest_key: Mapped[str] = mapped_column(sa.String(300))
    statistics: Mapped[str] = mapped_column(sa.Text, default="{}")
    # What the exercise catalog said of the exercise when the release was claimed.
    text: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    course: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    skill: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)


class ReleasedClip(Base):
    __tablename__ = "released_clips"
    __table_args__ = (sa.Index("ix_released_clips_release_position", "release_id", "position"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    release_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("releases.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(sa.Integer)
    object_key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    duration_s: Mapped[float] = mapped_column(sa.Float)
    sample_rate: Mapped[int] = mapped_column(sa.Integer)
    loudness_dbfs: Mapped[float] = mapped_column(sa.Float)
    # Set when the clip is written into its shard: the SHA-256 of its released bytes, the
    # shard's number, and where the bytes start in the shard's tar and how long they are.
    sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    shard: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    member_offset: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    member_size: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
