"""Review rows as scorer records: scoring open reports and collecting training labels.

A record carries its prompt's current accepted list; for a decided report the translation its
own acceptance added is left out, so training never shows a report its own answer as accepted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from reports_ml.models import ReportRecord
from reports_ml.scoring import Scorer
from reports_ml.tables import AcceptedTranslation, CoursePrompt, Report

__all__ = [
    "accepted_lists",
    "chunks",
    "labelled_records",
    "open_reports",
    "prompt_texts",
    "rescore",
    "rescore_open",
]

PromptKey = tuple[str, str]
_T = TypeVar("_T")
CHUNK = 500


def rescore_open(session: Session, scorer: Scorer) -> int:
    """Score every open report again (after a model change); returns how many."""
    return rescore(session, scorer, open_reports(session))


def labelled_records(session: Session) -> list[ReportRecord]:
    """Every decided report as a training record; a report never sees its own answer accepted."""
    rows = list(session.scalars(sa.select(Report).where(Report.decision.is_not(None))))
    return _records(session, rows, labelled=True)


def open_reports(
    session: Session, *, course: str | None = None, prompt_ids: set[str] | None = None
) -> list[Report]:
    query = sa.select(Report).where(Report.decision.is_(None))
    if course is not None:
        query = query.where(Report.course == course)
    if prompt_ids is None:
        return list(session.scalars(query))
    found: list[Report] = []
    for chunk in chunks(sorted(prompt_ids), CHUNK):
        found.extend(session.scalars(query.where(Report.prompt_id.in_(chunk))))
    return found


def rescore(session: Session, scorer: Scorer, reports: Sequence[Report]) -> int:
    for chunk in chunks(list(reports), CHUNK):
        scores = scorer.score(_records(session, chunk, labelled=False))
        for report, score in zip(chunk, scores, strict=True):
            report.score = float(score)
            report.scored_by = scorer.version
    session.flush()
    return len(reports)


def _records(session: Session, rows: Sequence[Report], *, labelled: bool) -> list[ReportRecord]:
    prompts = prompt_texts(session, rows)
    accepted = accepted_lists(session, {(r.course, r.prompt_id) for r in rows})
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}
    records = []
    for row in rows:
        translations = tuple(
            text
            for text, source in accepted.get((row.course, row.prompt_id), [])
            if source != row.id
        )
        records.append(
            ReportRecord(
                report_id=row.id,
                course=row.course,
                prompt_id=row.prompt_id,
                prompt=prompts[(row.course, row.prompt_id)],
                answer=row.answer,
                accepted=shared.setdefault(translations, translations),
                times_reported=row.times_reported,
                label=row.decision if labelled else None,
            )
        )
    return records


def prompt_texts(session: Session, rows: Iterable[Report]) -> dict[PromptKey, str]:
    texts: dict[PromptKey, str] = {}
    by_course: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_course[row.course].add(row.prompt_id)
    for course, prompt_ids in by_course.items():
        for chunk in chunks(sorted(prompt_ids), CHUNK):
            for prompt_id, text in session.execute(
                sa.select(CoursePrompt.prompt_id, CoursePrompt.text).where(
                    CoursePrompt.course == course, CoursePrompt.prompt_id.in_(chunk)
                )
            ):
                texts[(course, prompt_id)] = text
    return texts


def accepted_lists(
    session: Session, keys: set[PromptKey]
) -> dict[PromptKey, list[tuple[str, str | None]]]:
    """Accepted translations (text, source report) per prompt, in list order."""
    lists: dict[PromptKey, list[tuple[str, str | None]]] = defaultdict(list)
    by_course: dict[str, set[str]] = defaultdict(set)
    for course, prompt_id in keys:
        by_course[course].add(prompt_id)
    for course, prompt_ids in by_course.items():
        for chunk in chunks(sorted(prompt_ids), CHUNK):
            for prompt_id, text, source in session.execute(
                sa.select(
                    AcceptedTranslation.prompt_id,
                    AcceptedTranslation.text,
                    AcceptedTranslation.source_report_id,
                )
                .where(
                    AcceptedTranslation.course == course,
                    AcceptedTranslation.prompt_id.in_(chunk),
                )
                .order_by(AcceptedTranslation.prompt_id, AcceptedTranslation.position)
            ):
                lists[(course, prompt_id)].append((text, source))
    return lists


def chunks(items: Sequence[_T], size: int) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
