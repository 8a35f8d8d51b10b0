"""Withdrawn consent tokens (P9): a withdrawn token uploads nothing more until it expires.

Only the SHA-256 of the token is kept, with the token's own expiry, and it is deleted once
expired; never the learner id (P3).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class WithdrawnToken(Base):
    __tablename__ = "withdrawn_tokens"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(sa.BigInteger)
