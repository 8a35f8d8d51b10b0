"""The hash-chained audit log (P8) and the release-cycle clock it is dated by.

Entries carry a release-cycle number and a day, never a finer time (P4). The cycle counter lives
here, below the domains, because the audit log stamps every entry with it while the aggregate
domain advances it and counts retention (P10) in it.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(sa.String(40))
    body: Mapped[str] = mapped_column(sa.Text)
    cycle: Mapped[int] = mapped_column(sa.Integer)
    day: Mapped[dt.date] = mapped_column(sa.Date)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)


class ReleaseCycle(Base):
    """A single row counting completed release cycles: the coarse clock of retention (P10)."""

    __tablename__ = "release_cycles"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    current: Mapped[int] = mapped_column(sa.Integer, default=0)
    # When the counter last moved, so replicas running the job advance it once per interval.
    # It dates a cycle, never a clip or a bucket (P4).
    advanced_at: Mapped[dt.datetime | None] = mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
