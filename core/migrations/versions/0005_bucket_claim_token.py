"""Buckets gain ``claim_token``: the random token of the release runner that claimed it last.

Every write of a release checks it in the same transaction (``aggregate.fencing``), so a
runner whose claim was taken over (its lock connection died) stops instead of writing over the
new owner's work. Random, not a counter: it says nothing about when or how often (P4).

Revision ID: 0005
Revises: 0004_model_registry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004_model_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("buckets", sa.Column("claim_token", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("claim_token")
