"""The review scorer's model registry moves into the database (files into the blob store).

``model_versions`` lists every stored version with how it was trained and evaluated; its files
are objects under ``object_prefix``. ``model_registry`` is one row: the promoted version and the
number of labels the last training run saw, which every replica reads; it exists from the
start, so replicas only ever update it.

Revision ID: 0004_model_registry
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_model_registry"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("version", sa.String(length=16), nullable=False),
        sa.Column("object_prefix", sa.String(length=64), nullable=False),
        sa.Column("created", sa.String(length=32), nullable=False),
        sa.Column("trained_on", sa.Integer(), nullable=False),
        sa.Column("held_back", sa.Integer(), nullable=False),
        sa.Column("auc", sa.Float(), nullable=True),
        sa.Column("compared_with", sa.String(length=64), nullable=True),
        sa.Column("compared_auc", sa.Float(), nullable=True),
        sa.Column("promoted_on_training", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_model_versions")),
    )
    registry = op.create_table(
        "model_registry",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("promoted", sa.String(length=16), nullable=True),
        sa.Column("labels_at_last_training", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["promoted"],
            ["model_versions.version"],
            name=op.f("fk_model_registry_promoted_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_registry")),
    )
    # The one row exists from the start: replicas only ever update it.
    op.bulk_insert(registry, [{"id": 1, "promoted": None, "labels_at_last_training": 0}])


def downgrade() -> None:
    op.drop_table("model_registry")
    op.drop_table("model_versions")
