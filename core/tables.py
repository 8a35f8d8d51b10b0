"""Role API keys, stored only as SHA-256 hashes (P11); the deployment's random id."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, without_insertion_order
from core.ids import new_id


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(20))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(sa.Boolean, default=False)


class Deployment(Base):
    """One row: a random id naming this deployment's memory-only folders (``core.keystore``),
    so two deployments on one host never share one, whatever their database URLs say."""

    __tablename__ = "deployment"
    __table_args__ = (without_insertion_order(),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
