"""What a reviewer sees beside an answer: the nearest accepted translation and a word diff."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

from reports_ml.features import nearest_accepted as nearest_position
from reports_ml.text import normalize_answer, tokenize

__all__ = ["DiffSegment", "nearest_accepted", "word_diff"]


class DiffSegment(BaseModel):
    """``same`` words in both; ``extra`` only in the answer; ``missing`` only in the translation."""

    op: Literal["same", "extra", "missing"]
    text: str


def nearest_accepted(answer: str, accepted: Sequence[str]) -> str | None:
    """The accepted translation nearest to ``answer`` in words, as the scorer's features see it."""
    position = nearest_position(answer, accepted)
    return accepted[position] if position is not None else None


def word_diff(answer: str, translation: str) -> list[DiffSegment]:
    """Word-level differences between an answer and a translation, in the answer's order."""
    ours, theirs = tokenize(normalize_answer(answer)), tokenize(normalize_answer(translation))
    segments: list[DiffSegment] = []
    matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
    for tag, a_start, a_end, b_start, b_end in matcher.get_opcodes():
        if tag == "equal":
            segments.append(DiffSegment(op="same", text=" ".join(ours[a_start:a_end])))
            continue
        if b_end > b_start:
            segments.append(DiffSegment(op="missing", text=" ".join(theirs[b_start:b_end])))
        if a_end > a_start:
            segments.append(DiffSegment(op="extra", text=" ".join(ours[a_start:a_end])))
    return segments
