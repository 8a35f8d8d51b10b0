"""The exercise usage catalog that decides which exercises may collect clips (P5), and says
what a released clip of each exercise is: its prompt text, language, course and skill."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class ExerciseUsage(Base):
    __tablename__ = "exercise_usage"

    exercise_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    learners: Mapped[int] = mapped_column(sa.Integer)
    language: Mapped[str | None] = mapped_column(sa.String(35), nullable=True)
    text: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    course: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    skill: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
