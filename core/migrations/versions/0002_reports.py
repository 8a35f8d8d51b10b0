"""Report review: course prompts, accepted translations, reports, reporters, thank-you outbox.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "course_prompts",
        sa.Column("course", sa.String(length=100), nullable=False),
        sa.Column("prompt_id", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("course", "prompt_id", name=op.f("pk_course_prompts")),
    )
    op.create_table(
        "thank_you_outbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("reporter_id", sa.String(length=200), nullable=False),
        sa.Column("course", sa.String(length=100), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_thank_you_outbox")),
    )
    op.create_table(
        "accepted_translations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("course", sa.String(length=100), nullable=False),
        sa.Column("prompt_id", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("normalized_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_report_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["course", "prompt_id"],
            ["course_prompts.course", "course_prompts.prompt_id"],
            name=op.f("fk_accepted_translations_course_course_prompts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accepted_translations")),
        sa.UniqueConstraint(
            "course",
            "prompt_id",
            "normalized_sha256",
            name=op.f("uq_accepted_translations_course"),
        ),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("course", sa.String(length=100), nullable=False),
        sa.Column("prompt_id", sa.String(length=200), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("normalized_sha256", sa.String(length=64), nullable=False),
        sa.Column("times_reported", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("scored_by", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["course", "prompt_id"],
            ["course_prompts.course", "course_prompts.prompt_id"],
            name=op.f("fk_reports_course_course_prompts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
        sa.UniqueConstraint(
            "course", "prompt_id", "normalized_sha256", name=op.f("uq_reports_course")
        ),
    )
    op.create_index("ix_reports_queue", "reports", ["course", "decision", "score"], unique=False)
    op.create_table(
        "report_reporters",
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("reporter_id", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_report_reporters_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", "reporter_id", name=op.f("pk_report_reporters")),
    )


def downgrade() -> None:
    op.drop_table("report_reporters")
    op.drop_index("ix_reports_queue", table_name="reports")
    op.drop_table("reports")
    op.drop_table("accepted_translations")
    op.drop_table("thank_you_outbox")
    op.drop_table("course_prompts")
