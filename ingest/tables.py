"""Withdrawn consent tokens (P9): a withdrawn token uploads nothing more until it expires.

Only the SHA-256 of the token is kept, with its expiry rounded up to the day (the exact expiry
would order withdrawals), and it is deleted once expired; never the learner id (P3). No hidden
rowid counts withdrawals on SQLite (P4).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, without_insertion_order


class WithdrawnToken(Base):
    __tablename__ = "withdrawn_tokens"
    __table_args__ = (without_insertion_order(),)

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    # Seconds since the epoch, at a midnight UTC: the day after the token's expiry.
    expires_at: Mapped[int] = mapped_column(sa.BigInteger)


DAY_S = 86_400


def expiry_day(expires_at: float) -> int:
    """``expires_at`` rounded up to the next midnight UTC."""
    return -(-int(expires_at) // DAY_S) * DAY_S
