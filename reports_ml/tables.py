"""Course prompts, accepted translations, learner reports, reporters and the thank-you outbox.

Reporter ids are personal data: they live only in ``report_reporters`` (while a report is open)
and ``thank_you_outbox`` (until an admin acknowledges the notice), never in ``reports`` and never
in anything a contributor reads. Ids are random (``core.ids.new_id``) and no table has a
timestamp column, so neither ids nor rows say when a learner reported.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.ids import new_id

MAX_ANSWER_CHARS = 2000
COURSE_LENGTH = 100
PROMPT_ID_LENGTH = 200
REPORTER_ID_LENGTH = 200


class CoursePrompt(Base):
    __tablename__ = "course_prompts"

    course: Mapped[str] = mapped_column(sa.String(COURSE_LENGTH), primary_key=True)
    prompt_id: Mapped[str] = mapped_column(sa.String(PROMPT_ID_LENGTH), primary_key=True)
    text: Mapped[str] = mapped_column(sa.Text)


class AcceptedTranslation(Base):
    """One accepted translation; ``normalized_sha256`` keys the answer under normalize_answer.

    ``source_report_id`` is set when the translation was accepted through review, so training
    never shows a report its own answer as an accepted translation.
    """

    __tablename__ = "accepted_translations"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["course", "prompt_id"],
            ["course_prompts.course", "course_prompts.prompt_id"],
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("course", "prompt_id", "normalized_sha256"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    course: Mapped[str] = mapped_column(sa.String(COURSE_LENGTH))
    prompt_id: Mapped[str] = mapped_column(sa.String(PROMPT_ID_LENGTH))
    position: Mapped[int] = mapped_column(sa.Integer)
    text: Mapped[str] = mapped_column(sa.Text)
    normalized_sha256: Mapped[str] = mapped_column(sa.String(64))
    source_report_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)


class Report(Base):
    """Identical answers to one prompt (under normalize_answer) are one report.

    ``decision`` is NULL while the report is open, then the reviewers' label.
    """

    __tablename__ = "reports"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["course", "prompt_id"],
            ["course_prompts.course", "course_prompts.prompt_id"],
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("course", "prompt_id", "normalized_sha256"),
        sa.Index("ix_reports_queue", "course", "decision", "score"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    course: Mapped[str] = mapped_column(sa.String(COURSE_LENGTH))
    prompt_id: Mapped[str] = mapped_column(sa.String(PROMPT_ID_LENGTH))
    answer: Mapped[str] = mapped_column(sa.Text)
    normalized_sha256: Mapped[str] = mapped_column(sa.String(64))
    times_reported: Mapped[int] = mapped_column(sa.Integer, default=1)
    score: Mapped[float] = mapped_column(sa.Float)
    scored_by: Mapped[str] = mapped_column(sa.String(64))
    decision: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)


class ReportReporter(Base):
    """Who sent an open report, kept only to thank them if it is accepted."""

    __tablename__ = "report_reporters"

    report_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True
    )
    reporter_id: Mapped[str] = mapped_column(sa.String(REPORTER_ID_LENGTH), primary_key=True)


class ThankYouNotice(Base):
    """A thank-you for an accepted report, waiting for the e-mail service to send it."""

    __tablename__ = "thank_you_outbox"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    reporter_id: Mapped[str] = mapped_column(sa.String(REPORTER_ID_LENGTH))
    course: Mapped[str] = mapped_column(sa.String(COURSE_LENGTH))
    prompt: Mapped[str] = mapped_column(sa.Text)
    answer: Mapped[str] = mapped_column(sa.Text)


class ModelVersion(Base):
    """A stored scorer version; its files are objects under ``object_prefix`` in the blob store.

    The version name is the next free number, claimed by the primary key, so two writers on
    different replicas never take the same one.
    """

    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    object_prefix: Mapped[str] = mapped_column(sa.String(64))
    created: Mapped[str] = mapped_column(sa.String(32))
    trained_on: Mapped[int] = mapped_column(sa.Integer)
    held_back: Mapped[int] = mapped_column(sa.Integer)
    auc: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    compared_with: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    compared_auc: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    promoted_on_training: Mapped[bool] = mapped_column(sa.Boolean, default=False)


class ModelRegistryState(Base):
    """The one row every replica reads: which version serves, and the labels last trained on."""

    __tablename__ = "model_registry"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    promoted: Mapped[str | None] = mapped_column(
        sa.String(16), sa.ForeignKey("model_versions.version"), nullable=True
    )
    labels_at_last_training: Mapped[int] = mapped_column(sa.Integer, default=0)
