"""Releases as datasets: the catalog says what a clip is; released clips live in tar shards.

``exercise_usage`` gains the prompt ``text``, ``course`` and ``skill`` (its ``language`` is now
a validated BCP 47 tag). A release keeps the text, course and skill its exercise had when it was
claimed. A released clip records the SHA-256 of its released bytes, the shard that holds it and
where its bytes start in that shard and how long they are, so one clip can be served, and every
shard member checked, without unpacking the shard. Pending clips are indexed by the released id
a release planned for them, which the release joins on to read them in their released order.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _describing_columns(table: str) -> None:
    op.add_column(table, sa.Column("text", sa.Text(), nullable=True))
    op.add_column(table, sa.Column("course", sa.String(length=200), nullable=True))
    op.add_column(table, sa.Column("skill", sa.String(length=200), nullable=True))


def upgrade() -> None:
    _describing_columns("exercise_usage")
    _describing_columns("releases")
    op.add_column("released_clips", sa.Column("sha256", sa.String(length=64), nullable=True))
    op.add_column("released_clips", sa.Column("shard", sa.Integer(), nullable=True))
    op.add_column("released_clips", sa.Column("member_offset", sa.BigInteger(), nullable=True))
    op.add_column("released_clips", sa.Column("member_size", sa.Integer(), nullable=True))
    op.create_index(
        "ix_pending_clips_release_clip_id", "pending_clips", ["release_clip_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_pending_clips_release_clip_id", table_name="pending_clips")
    with op.batch_alter_table("released_clips") as batch:
        for name in ("member_size", "member_offset", "shard", "sha256"):
            batch.drop_column(name)
    for table in ("releases", "exercise_usage"):
        with op.batch_alter_table(table) as batch:
            for name in ("skill", "course", "text"):
                batch.drop_column(name)
