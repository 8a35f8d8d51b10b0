"""Schemas of the review API, named by direction (``XCreate`` in, ``XRead`` out).

Reporter ids appear only in ``ReportCreate`` (from the app) and ``ThankYouRead`` (to admins);
nothing a contributor reads carries one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.text import StorableText
from reports_ml.diff import DiffSegment
from reports_ml.tables import COURSE_LENGTH, MAX_ANSWER_CHARS, PROMPT_ID_LENGTH, REPORTER_ID_LENGTH
from reports_ml.text import normalize_answer

Course = Annotated[
    StorableText, Field(min_length=1, max_length=COURSE_LENGTH, pattern=r"^[\w.-]+$")
]
PromptId = Annotated[StorableText, Field(min_length=1, max_length=PROMPT_ID_LENGTH)]
AnswerText = Annotated[StorableText, Field(max_length=MAX_ANSWER_CHARS)]


def _has_words(text: str) -> str:
    if not normalize_answer(text):
        raise ValueError("must contain at least one word")
    return text


class PromptCreate(BaseModel):
    """A prompt and its accepted translations, most frequent first."""

    model_config = ConfigDict(extra="forbid")

    prompt_id: PromptId
    text: StorableText = Field(max_length=MAX_ANSWER_CHARS)
    accepted: list[AnswerText] = Field(min_length=1, max_length=100_000)

    @field_validator("accepted")
    @classmethod
    def _accepted_have_words(cls, accepted: list[str]) -> list[str]:
        return [_has_words(text) for text in accepted]


class CoursePromptsRead(BaseModel):
    course: str
    created: int
    updated: int
    prompts: int
    closed_reports: int = Field(description="open reports whose answer the new lists accept")


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    course: Course
    prompt_id: PromptId
    answer: AnswerText
    reporter_id: StorableText = Field(min_length=1, max_length=REPORTER_ID_LENGTH)

    @field_validator("answer")
    @classmethod
    def _answer_has_words(cls, answer: str) -> str:
        return _has_words(answer)


class ReportIntakeRead(BaseModel):
    """``queued``: waiting for review; ``already_accepted``/``already_rejected``: decided before."""

    status: Literal["queued", "already_accepted", "already_rejected"]
    report_id: str | None = None
    times_reported: int | None = None


class ScorerRead(BaseModel):
    kind: Literal["model", "heuristic"]
    version: str
    note: str


class QueueItemRead(BaseModel):
    report_id: str
    course: str
    prompt_id: str
    prompt: str
    answer: str
    times_reported: int
    score: float
    scored_by: str
    nearest_accepted: str | None
    diff: list[DiffSegment]


class QueueRead(BaseModel):
    course: str
    items: list[QueueItemRead]
    open_reports: int
    next_cursor: str | None
    scorer: ScorerRead


class DecisionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accept: bool


class DecisionRead(BaseModel):
    report_id: str
    accepted: bool
    rescored: int = Field(description="open reports of the prompt scored again")
    thank_you_notices: int


class CourseRead(BaseModel):
    course: str
    prompts: int
    open_reports: int


class ThankYouRead(BaseModel):
    id: str
    reporter_id: str
    course: str
    prompt: str
    answer: str


class OutboxRead(BaseModel):
    items: list[ThankYouRead]
