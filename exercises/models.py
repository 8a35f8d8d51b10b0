"""Schemas of the exercise catalog routes, named by direction."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from core.text import StorableText

ExerciseId = Annotated[
    StorableText, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
]


class ExerciseUsageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exercise_id: ExerciseId
    # The column is a 32-bit INTEGER: larger values would fail in the database, not here.
    learners: int = Field(ge=0, le=2**31 - 1)
    language: StorableText | None = Field(default=None, max_length=35)


class UsageReplacedRead(BaseModel):
    exercises: int
    eligible: int


