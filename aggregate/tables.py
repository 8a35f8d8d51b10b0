"""Buckets, pending clips and releases.

Upholds P3 (only keyed contributor tags; the bucket key is nulled on release or purge) and P4
(random ids, no timestamp columns: buckets count release cycles, releases carry only a day).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.ids import new_id

BUCKET_STATES = ("open", "releasing", "released", "purged")


class Bucket(Base):
    __tablename__ = "buckets"
    __table_args__ = (
        sa.Index(
            "uq_buckets_open_exercise",
            "exercise_id",
            unique=True,
            sqlite_where=sa.text("state = 'open'"),
            postgresql_where=sa.text("state = 'open'"),
        ),
        sa.Index("ix_buckets_state", "state"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    exercise_id: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[str] = mapped_column(sa.String(16), default="open")
    bucket_key: Mapped[bytes | None] = mapped_column(sa.LargeBinary(64), nullable=True)
    opened_cycle: Mapped[int] = mapped_column(sa.Integer)
    release_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)


class PendingClip(Base):
    __tablename__ = "pending_clips"
    # One row per (bucket, contributor, slot) with slot < max_clips_per_contributor: the unique
    # constraint enforces the contribution cap even under concurrent uploads (P6).
    # The (bucket, id) index lets a release walk a 100,000-clip bucket in keyset batches.
    __table_args__ = (
        sa.UniqueConstraint("bucket_id", "contributor_tag", "slot"),
        sa.Index("ix_pending_clips_bucket_id_id", "bucket_id", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    bucket_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("buckets.id", ondelete="CASCADE")
    )
    contributor_tag: Mapped[str] = mapped_column(sa.String(64))
    slot: Mapped[int] = mapped_column(sa.Integer)
    object_key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    duration_s: Mapped[float] = mapped_column(sa.Float)
    sample_rate: Mapped[int] = mapped_column(sa.Integer)
    loudness_dbfs: Mapped[float] = mapped_column(sa.Float)


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
