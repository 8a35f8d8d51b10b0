"""Bucket keys leave the database; pending tables lose their hidden rowid; withdrawn tokens.

Bucket keys now live only in memory (``core.keystore``): the ``bucket_key`` column is dropped,
and every bucket that was open is sealed (it held a key only the database knew). On SQLite the
``buckets`` and ``pending_clips`` tables are rebuilt ``WITHOUT ROWID``, so no hidden row number
counts arrivals (P4). Pending clips gain ``release_clip_id``, the fresh random name a release
gives a clip. ``withdrawn_tokens`` holds the SHA-256 of a withdrawn consent token until it
expires, never a learner id.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _buckets(name: str, **kwargs: Any) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("exercise_id", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_cycle", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buckets")),
        **kwargs,
    )


def _pending_clips(name: str, parent: str, **kwargs: Any) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("bucket_id", sa.String(length=32), nullable=False),
        sa.Column("contributor_tag", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("loudness_dbfs", sa.Float(), nullable=False),
        sa.Column("release_clip_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            [f"{parent}.id"],
            name=op.f("fk_pending_clips_bucket_id_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_clips")),
        sa.UniqueConstraint("object_key", name=op.f("uq_pending_clips_object_key")),
        sa.UniqueConstraint(
            "bucket_id", "contributor_tag", "slot", name=op.f("uq_pending_clips_bucket_id")
        ),
        **kwargs,
    )


def _indexes() -> None:
    op.create_index("ix_buckets_state", "buckets", ["state"], unique=False)
    op.create_index(
        "uq_buckets_open_exercise",
        "buckets",
        ["exercise_id"],
        unique=True,
        sqlite_where=sa.text("state = 'open'"),
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_index(
        "ix_pending_clips_bucket_id_id", "pending_clips", ["bucket_id", "id"], unique=False
    )


def upgrade() -> None:
    op.execute("UPDATE buckets SET state = 'sealed' WHERE state = 'open'")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")
        _buckets("buckets_new", sqlite_with_rowid=False)
        op.execute(
            "INSERT INTO buckets_new (id, exercise_id, state, opened_cycle, release_id) "
            "SELECT id, exercise_id, state, opened_cycle, release_id FROM buckets"
        )
        _pending_clips("pending_clips_new", "buckets_new", sqlite_with_rowid=False)
        op.execute(
            "INSERT INTO pending_clips_new (id, bucket_id, contributor_tag, slot, object_key, "
            "duration_s, sample_rate, loudness_dbfs) SELECT id, bucket_id, contributor_tag, "
            "slot, object_key, duration_s, sample_rate, loudness_dbfs FROM pending_clips"
        )
        op.drop_table("pending_clips")
        op.drop_table("buckets")
        # SQLite rewrites pending_clips_new's reference to buckets_new on rename.
        op.rename_table("buckets_new", "buckets")
        op.rename_table("pending_clips_new", "pending_clips")
        _indexes()
    else:
        op.drop_column("buckets", "bucket_key")
        op.add_column(
            "pending_clips", sa.Column("release_clip_id", sa.String(length=32), nullable=True)
        )
    op.create_table(
        "withdrawn_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_withdrawn_tokens")),
    )


def downgrade() -> None:
    raise NotImplementedError("bucket keys cannot be brought back into the database")
