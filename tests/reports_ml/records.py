"""Simulated report records and the review tables filled with them, for the retraining tests
(unit and end-to-end)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import sqlalchemy as sa

from core.db import Database
from reports_ml.models import ReportRecord
from reports_ml.review import answer_key
from reports_ml.simulate import simulate_course
from reports_ml.staple import load_staple
from reports_ml.tables import AcceptedTranslation, CoursePrompt, Report
from tests.datasets import STAPLE_DIR

STAPLE_PT = STAPLE_DIR / "excerpt.en_pt.gold.txt"


@functools.cache
def simulated(prompts: int = 30, seed: int = 7) -> list[ReportRecord]:
    return simulate_course("en_pt", load_staple(STAPLE_PT)[:prompts], seed=seed)


def store_reports(database: Database, records: Sequence[ReportRecord], *, decided: bool) -> None:
    """Put simulated reports in the review tables, decided by their gold label or left open."""
    with database.session() as session:
        known = set(session.scalars(sa.select(CoursePrompt.prompt_id)))
        for record in records:
            if record.prompt_id not in known:
                known.add(record.prompt_id)
                session.add(
                    CoursePrompt(
                        course=record.course, prompt_id=record.prompt_id, text=record.prompt
                    )
                )
                session.flush()
                unique = {answer_key(text): text for text in reversed(record.accepted)}
                session.execute(
                    sa.insert(AcceptedTranslation),
                    [
                        {
                            "course": record.course,
                            "prompt_id": record.prompt_id,
                            "position": i,
                            "text": text,
                            "normalized_sha256": key,
                        }
                        for i, (key, text) in enumerate(reversed(unique.items()))
                    ],
                )
            session.add(
                Report(
                    course=record.course,
                    prompt_id=record.prompt_id,
                    answer=record.answer,
                    normalized_sha256=answer_key(record.answer),
                    times_reported=record.times_reported,
                    score=0.0,
                    scored_by="setup",
                    decision=record.label if decided else None,
                )
            )
