"""Pending clips sealed under their bucket's memory-only key; a deployment id; coarse withdrawals.

Every pending value a release publishes, or that anyone could compute from released audio, is
now AEAD ciphertext under a key derived from the bucket's key (``core.sealing``): the plain
``duration_s``, ``sample_rate``, ``loudness_dbfs`` and ``release_clip_id`` columns give way to
``sealed_facts`` and ``plan_tag`` (a keyed digest of the released id), and ``recording_tag`` (a
keyed digest of the canonical samples) makes a bucket refuse the same recording twice, and
``request_digest`` (a keyed digest of an Idempotency-Key request) stores a retried upload once.
Clips still pending from before were stored in clear and cannot be sealed here (their keys live
only in memory): their buckets are closed as purged and their rows deleted; the orphan sweeper
removes their objects.

``deployment`` holds one random id that names this deployment's memory-only folders, so two
deployments on one host never share one. ``withdrawn_tokens`` loses its hidden rowid on SQLite
(it counted withdrawals) and keeps each expiry only to the day.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_DAY_S = 86_400


def _pending_clips(**kwargs: Any) -> None:
    op.create_table(
        "pending_clips",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("bucket_id", sa.String(length=32), nullable=False),
        sa.Column("contributor_tag", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column("recording_tag", sa.String(length=64), nullable=False),
        sa.Column("sealed_facts", sa.LargeBinary(), nullable=False),
        sa.Column("plan_tag", sa.String(length=64), nullable=True),
        sa.Column("request_digest", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            ["buckets.id"],
            name=op.f("fk_pending_clips_bucket_id_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_clips")),
        sa.UniqueConstraint("object_key", name=op.f("uq_pending_clips_object_key")),
        sa.UniqueConstraint(
            "bucket_id", "contributor_tag", "slot", name=op.f("uq_pending_clips_bucket_id")
        ),
        sa.UniqueConstraint(
            "bucket_id", "recording_tag", name=op.f("uq_pending_clips_bucket_id_recording_tag")
        ),
        **kwargs,
    )
    op.create_index(
        "ix_pending_clips_bucket_id_id", "pending_clips", ["bucket_id", "id"], unique=False
    )
    op.create_index("ix_pending_clips_plan_tag", "pending_clips", ["plan_tag"], unique=False)
    op.create_index(
        "uq_pending_clips_request", "pending_clips", ["bucket_id", "request_digest"], unique=True
    )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("PRAGMA secure_delete = ON")
    op.execute(
        "UPDATE buckets SET state = 'purged' WHERE state IN ('open', 'sealed', 'releasing') "
        "AND id IN (SELECT bucket_id FROM pending_clips)"
    )
    op.execute(
        "DELETE FROM released_clips WHERE release_id IN "
        "(SELECT release_id FROM buckets WHERE state = 'purged' AND release_id IS NOT NULL)"
    )
    op.drop_index("ix_pending_clips_release_clip_id", table_name="pending_clips")
    op.drop_index("ix_pending_clips_bucket_id_id", table_name="pending_clips")
    op.drop_table("pending_clips")
    _pending_clips(sqlite_with_rowid=False)

    op.create_table(
        "deployment",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment")),
        sqlite_with_rowid=False,
    )
    op.execute(
        sa.text("INSERT INTO deployment (id) VALUES (:id)").bindparams(id=secrets.token_hex(16))
    )

    op.create_table(
        "withdrawn_tokens_new",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_withdrawn_tokens_new")),
        sqlite_with_rowid=False,
    )
    op.execute(
        sa.text(
            "INSERT INTO withdrawn_tokens_new (token_hash, expires_at) SELECT token_hash, "
            "((expires_at + :day - 1) / :day) * :day FROM withdrawn_tokens"
        ).bindparams(day=_DAY_S)
    )
    op.drop_table("withdrawn_tokens")
    op.rename_table("withdrawn_tokens_new", "withdrawn_tokens")
    if not sqlite:
        op.execute(
            "ALTER TABLE withdrawn_tokens RENAME CONSTRAINT pk_withdrawn_tokens_new "
            "TO pk_withdrawn_tokens"
        )


def downgrade() -> None:
    raise NotImplementedError("sealed pending data cannot be brought back into the clear")
