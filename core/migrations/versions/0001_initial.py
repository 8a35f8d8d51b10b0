"""Initial schema: keys, usage catalog, buckets, clips, releases, audit log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_entries_hash")),
    )
    op.create_table(
        "buckets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("exercise_id", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("bucket_key", sa.LargeBinary(length=64), nullable=True),
        sa.Column("opened_cycle", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buckets")),
    )
    op.create_index("ix_buckets_state", "buckets", ["state"], unique=False)
    op.create_index(
        "uq_buckets_open_exercise",
        "buckets",
        ["exercise_id"],
        unique=True,
        sqlite_where=sa.text("state = 'open'"),
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_table(
        "exercise_usage",
        sa.Column("exercise_id", sa.String(length=200), nullable=False),
        sa.Column("learners", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.PrimaryKeyConstraint("exercise_id", name=op.f("pk_exercise_usage")),
    )
    op.create_table(
        "release_cycles",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("current", sa.Integer(), nullable=False),
        sa.Column("advanced_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_cycles")),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("bucket_id", sa.String(length=32), nullable=False),
        sa.Column("exercise_id", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("release_day", sa.Date(), nullable=False),
        sa.Column("clip_count", sa.Integer(), nullable=False),
        sa.Column("contributor_count", sa.Integer(), nullable=False),
        sa.Column("k_in_force", sa.Integer(), nullable=False),
        sa.Column("policy_hash", sa.String(length=64), nullable=False),
        sa.Column("manifest_key", sa.String(length=300), nullable=False),
        sa.Column("statistics", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("bucket_id", name=op.f("uq_releases_bucket_id")),
    )
    op.create_index("ix_releases_exercise", "releases", ["exercise_id"], unique=False)
    op.create_table(
        "pending_clips",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("bucket_id", sa.String(length=32), nullable=False),
        sa.Column("contributor_tag", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("loudness_dbfs", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            ["buckets.id"],
            name=op.f("fk_pending_clips_bucket_id_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_clips")),
        sa.UniqueConstraint("object_key", name=op.f("uq_pending_clips_object_key")),
        sa.UniqueConstraint(
            "bucket_id",
            "contributor_tag",
            "slot",
            name=op.f("uq_pending_clips_bucket_id"),
        ),
    )
    op.create_index(
        "ix_pending_clips_bucket_id_id", "pending_clips", ["bucket_id", "id"], unique=False
    )
    op.create_table(
        "released_clips",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("release_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("loudness_dbfs", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_released_clips_release_id_releases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_released_clips")),
        sa.UniqueConstraint("object_key", name=op.f("uq_released_clips_object_key")),
    )
    op.create_index(
        "ix_released_clips_release_position",
        "released_clips",
        ["release_id", "position"],
        unique=False,
    )
    op.bulk_insert(
        sa.table("release_cycles", sa.column("id", sa.Integer), sa.column("current", sa.Integer)),
        [{"id": 1, "current": 0}],
    )


def downgrade() -> None:
    op.drop_index("ix_released_clips_release_position", table_name="released_clips")
    op.drop_table("released_clips")
    op.drop_index("ix_pending_clips_bucket_id_id", table_name="pending_clips")
    op.drop_table("pending_clips")
    op.drop_index("ix_releases_exercise", table_name="releases")
    op.drop_table("releases")
    op.drop_table("release_cycles")
    op.drop_table("exercise_usage")
    op.drop_index(
        "uq_buckets_open_exercise",
        table_name="buckets",
        sqlite_where=sa.text("state = 'open'"),
        postgresql_where=sa.text("state = 'open'"),
    )
    op.drop_index("ix_buckets_state", table_name="buckets")
    op.drop_table("buckets")
    op.drop_table("audit_entries")
    op.drop_table("api_keys")
