"""An upload's Idempotency-Key request, recorded on its pending row in the row's transaction.

``pending_clips.request_digest`` holds HMAC(bucket key, learner and Idempotency-Key, exercise
and audio) for an upload sent with a key: a retry whose first answer was lost, or whose key
store entry was never completed, is recognised in the bucket itself and stored only once
(unique per bucket). Keyed under the bucket's memory-only key, it is as private as the
contributor tag (P3).

Revision ID: 0008
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pending_clips", sa.Column("request_digest", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_pending_clips_request", "pending_clips", ["bucket_id", "request_digest"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_pending_clips_request", table_name="pending_clips")
    with op.batch_alter_table("pending_clips") as batch:
        batch.drop_column("request_digest")
