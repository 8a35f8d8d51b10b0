"""Schemas of the report scorer: STAPLE prompts, report records (ARCHITECTURE.md §6), model card."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from reports_ml.text import normalize_answer

__all__ = [
    "LabelSource",
    "ModelCard",
    "Prompt",
    "ReportLike",
    "ReportRecord",
    "Translation",
]

NonEmpty = Annotated[str, Field(min_length=1, max_length=200)]
# simulated: ``reports_ml.simulate`` over STAPLE gold sets; reviewers: contributors' decisions.
LabelSource = Literal["simulated", "reviewers", "unknown"]


class Translation(BaseModel):
    """One accepted translation of a prompt and how often learners type it (0-1)."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(min_length=1)
    weight: float = Field(ge=0.0, le=1.0)


class Prompt(BaseModel):
    """A prompt of a course with its translations, most frequent first."""

    model_config = ConfigDict(frozen=True)

    prompt_id: NonEmpty
    text: str
    translations: tuple[Translation, ...] = Field(min_length=1)


class ReportLike(Protocol):
    """What the scorer reads from a report; `ReportRecord` and the review service's rows fit."""

    @property
    def course(self) -> str: ...
    @property
    def prompt_id(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def answer(self) -> str: ...
    @property
    def accepted(self) -> Sequence[str]: ...
    @property
    def times_reported(self) -> int: ...


class ReportRecord(BaseModel):
    """A learner report as in ARCHITECTURE.md §6, one JSON object per line.

    Identical answers (under ``normalize_answer``) to one prompt are one report whose
    ``times_reported`` counts the learners who sent it. ``label`` is the reviewers' decision
    (true: the answer should be accepted) or null when undecided. ``score`` is set only by
    ``chorus reports score``.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    report_id: NonEmpty
    course: NonEmpty
    prompt_id: NonEmpty
    prompt: str
    answer: str = Field(min_length=1, max_length=2000)
    accepted: tuple[str, ...]
    times_reported: int = Field(ge=1)
    label: bool | None = None
    score: float | None = Field(default=None, ge=0.0, le=1.0)

    @field_validator("answer")
    @classmethod
    def _answer_has_words(cls, answer: str) -> str:
        if not normalize_answer(answer):
            raise ValueError("answer has no words (only punctuation or spaces)")
        return answer

    @field_validator("accepted")
    @classmethod
    def _share_accepted(cls, accepted: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # Thousands of reports of one prompt carry the same list: keep one copy when the
        # reader passes a dict as context["shared_accepted"].
        shared = info.context.get("shared_accepted") if isinstance(info.context, dict) else None
        return accepted if shared is None else shared.setdefault(accepted, accepted)


class ModelCard(BaseModel):
    """The JSON written beside a saved model: what it is, what it saw, how well it ranked."""

    model_config = ConfigDict(extra="forbid")

    format_version: int
    feature_set: str
    feature_names: list[str]
    hash_bits: int
    hyperparameters: dict[str, float | int | str]
    training_data_sha256: str
    n_reports: int
    n_correct: int
    n_prompts: int
    courses: dict[str, int]
    metrics: dict[str, float | None]
    created: str
    # What the model is for and what it is not, where its labels came from, under what
    # licence its training data is, and what it ran on (cards older than these fields lack them).
    intended_use: str = ""
    limitations: list[str] = Field(default_factory=list)
    label_source: LabelSource = "unknown"
    data_licence: str = "unspecified"
    sklearn_version: str = ""
    python_version: str = ""
