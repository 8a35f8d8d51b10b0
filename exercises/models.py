"""Schemas of the exercise catalog routes, named by direction.

The catalog says what a researcher needs to use a released clip: the prompt ``text`` the learner
read or answered, its ``language`` (a BCP 47 tag), and optionally the ``course`` and ``skill``
it belongs to. Nothing in it is about a learner.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.text import StorableText

ExerciseId = Annotated[
    StorableText, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
]

# RFC 5646 language tags: language[-extlang][-script][-region](-variant)*(-extension)*
# [-privateuse], or a private-use tag alone. The language is an ISO 639 code of 2 or 3
# letters (the grammar's 4-8 letter subtags are reserved or unassigned, and "english" is
# a mistake); irregular grandfathered tags are not accepted.
_BCP47 = re.compile(
    r"^(?:"
    r"[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}"
    r"(?:-[A-Za-z]{4})?"
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
    r"(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?"
    r"|[Xx](?:-[A-Za-z0-9]{1,8})+"
    r")$"
)


def bcp47(tag: str) -> str:
    """``tag`` if it is a well-formed BCP 47 language tag (``en``, ``pt-BR``, ``zh-Hant-TW``)."""
    if not _BCP47.match(tag):
        raise ValueError(f"language {tag!r} is not a BCP 47 language tag such as en or pt-BR")
    return tag


LanguageTag = Annotated[StorableText, Field(min_length=1, max_length=35), AfterValidator(bcp47)]
PromptText = Annotated[StorableText, Field(min_length=1, max_length=2000)]
Label = Annotated[StorableText, Field(min_length=1, max_length=200)]
Learners = Annotated[int, Field(ge=0, le=2**31 - 1)]


class ExerciseUsageCreate(BaseModel):
    """One catalog entry, whole (``PUT`` replaces the catalog with these)."""

    model_config = ConfigDict(extra="forbid")

    exercise_id: ExerciseId
    # The column is a 32-bit INTEGER: larger values would fail in the database, not here.
    learners: Learners
    language: LanguageTag | None = None
    text: PromptText | None = None
    course: Label | None = None
    skill: Label | None = None


class ExerciseUsageUpdate(BaseModel):
    """One entry of an upsert (``PATCH``): the fields given are set, the others kept.

    A new exercise needs ``learners``; a field given as null is cleared.
    """

    model_config = ConfigDict(extra="forbid")

    exercise_id: ExerciseId
    learners: Learners | None = None
    language: LanguageTag | None = None
    text: PromptText | None = None
    course: Label | None = None
    skill: Label | None = None


class UsageReplacedRead(BaseModel):
    exercises: int
    eligible: int


class UsageUpdatedRead(BaseModel):
    added: int
    changed: int
    exercises: int
    eligible: int
