"""Review service: course prompts, report intake, the queue, decisions and the thank-you outbox.

Privacy: a reporter id is stored only in ``report_reporters`` while its report is open; a decision
deletes those rows and, for an accepted report, moves each id into one thank-you notice, which an
admin acknowledges (and so deletes) once the e-mail is sent. Reporter ids are never returned by
contributor routes and never logged (P3, P11 in spirit). Report ids are random (P4).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from core.db import insert_ignoring_duplicates
from core.errors import AlreadyDecided, InvalidInput, NotFound
from core.ids import new_id
from reports_ml.diff import nearest_accepted, word_diff
from reports_ml.review_models import (
    CoursePromptsRead,
    CourseRead,
    DecisionRead,
    PromptCreate,
    QueueItemRead,
    ReportCreate,
    ReportIntakeRead,
    ThankYouRead,
)
from reports_ml.review_records import (
    CHUNK,
    accepted_lists,
    chunks,
    open_reports,
    prompt_texts,
    rescore,
)
from reports_ml.scoring import Scorer
from reports_ml.tables import (
    AcceptedTranslation,
    CoursePrompt,
    Report,
    ReportReporter,
    ThankYouNotice,
)
from reports_ml.text import normalize_answer


def answer_key(text: str) -> str:
    """The grouping key of an answer: SHA-256 of its normalized form."""
    return hashlib.sha256(normalize_answer(text).encode("utf-8")).hexdigest()


# --- prompts ---------------------------------------------------------------------------------


def put_prompts(
    session: Session, *, course: str, prompts: Sequence[PromptCreate], scorer: Scorer
) -> CoursePromptsRead:
    """Add or update ``course``'s prompts; prompts not listed are kept.

    A listed prompt's accepted list is replaced, except translations accepted through review,
    which stay. Open reports whose answer is now accepted are closed as accepted (their reporters
    are thanked); the other open reports of the listed prompts are scored again.
    """
    ids = [p.prompt_id for p in prompts]
    if len(set(ids)) != len(ids):
        raise InvalidInput("a prompt_id is listed twice")
    existing = {
        row.prompt_id: row
        for row in session.scalars(sa.select(CoursePrompt).where(CoursePrompt.course == course))
    }
    rows: list[dict[str, Any]] = []
    keys_by_prompt: dict[str, set[str]] = {}
    for prompt in prompts:
        row = existing.get(prompt.prompt_id)
        if row is None:
            session.add(CoursePrompt(course=course, prompt_id=prompt.prompt_id, text=prompt.text))
        else:
            row.text = prompt.text
        keys_by_prompt[prompt.prompt_id] = set()
    session.flush()
    reviewed: defaultdict[str, set[str]] = defaultdict(set)
    for prompt_id, key in session.execute(
        sa.select(AcceptedTranslation.prompt_id, AcceptedTranslation.normalized_sha256).where(
            AcceptedTranslation.course == course,
            AcceptedTranslation.source_report_id.is_not(None),
        )
    ):
        reviewed[prompt_id].add(key)
    for chunk in chunks(ids, CHUNK):
        session.execute(
            sa.delete(AcceptedTranslation).where(
                AcceptedTranslation.course == course,
                AcceptedTranslation.prompt_id.in_(chunk),
                AcceptedTranslation.source_report_id.is_(None),
            )
        )
    for prompt in prompts:
        seen = keys_by_prompt[prompt.prompt_id]
        for position, text in enumerate(prompt.accepted):
            key = answer_key(text)
            if key in seen:
                continue
            seen.add(key)
            if key not in reviewed[prompt.prompt_id]:
                rows.append(
                    {
                        "course": course,
                        "prompt_id": prompt.prompt_id,
                        "position": position,
                        "text": text,
                        "normalized_sha256": key,
                    }
                )
    if rows:
        session.execute(sa.insert(AcceptedTranslation), rows)
    closed = 0
    waiting = open_reports(session, course=course, prompt_ids=set(ids))
    for report in waiting:
        if report.normalized_sha256 in keys_by_prompt[report.prompt_id]:
            _close(session, report, accept=True, add_translation=False)
            closed += 1
    rescore(session, scorer, [r for r in waiting if r.decision is None])
    return CoursePromptsRead(
        course=course,
        created=sum(1 for i in ids if i not in existing),
        updated=sum(1 for i in ids if i in existing),
        prompts=len(existing) + sum(1 for i in ids if i not in existing),
        closed_reports=closed,
    )


def list_courses(session: Session) -> list[CourseRead]:
    prompts = dict(
        session.execute(
            sa.select(CoursePrompt.course, sa.func.count()).group_by(CoursePrompt.course)
        ).all()
    )
    open_counts = dict(
        session.execute(
            sa.select(Report.course, sa.func.count())
            .where(Report.decision.is_(None))
            .group_by(Report.course)
        ).all()
    )
    return [
        CourseRead(course=course, prompts=count, open_reports=open_counts.get(course, 0))
        for course, count in sorted(prompts.items())
    ]


# --- intake ----------------------------------------------------------------------------------


def submit_report(
    session: Session, *, report: ReportCreate, scorer: Scorer
) -> tuple[ReportIntakeRead, bool]:
    """Record one learner's report; returns the answer and whether a new report was opened."""
    prompt = session.get(CoursePrompt, (report.course, report.prompt_id))
    if prompt is None:
        raise NotFound(f"no prompt {report.prompt_id!r} in course {report.course!r}")
    key = answer_key(report.answer)
    if _is_accepted(session, report.course, report.prompt_id, key):
        return ReportIntakeRead(status="already_accepted"), False
    row, created = _find_or_open(session, report=report, key=key)
    if row.decision is not None:
        status = "already_accepted" if row.decision else "already_rejected"
        return ReportIntakeRead(status=status), False
    if not created and _add_reporter(session, row.id, report.reporter_id):
        session.execute(
            sa.update(Report)
            .where(Report.id == row.id)
            .values(times_reported=Report.times_reported + 1)
        )
        session.refresh(row)
    rescore(session, scorer, [row])
    return ReportIntakeRead(
        status="queued", report_id=row.id, times_reported=row.times_reported
    ), created


def _find_or_open(session: Session, *, report: ReportCreate, key: str) -> tuple[Report, bool]:
    """The report of this answer, opened if new; whether it was opened by this request.

    The INSERT ... ON CONFLICT DO NOTHING is the transaction's first write, so racing requests
    with the same answer queue on the write lock (SQLite) or the unique index (PostgreSQL) and
    all but one join the report instead of failing.
    """
    report_id = new_id()
    created = insert_ignoring_duplicates(
        session,
        Report,
        {
            "id": report_id,
            "course": report.course,
            "prompt_id": report.prompt_id,
            "answer": report.answer,
            "normalized_sha256": key,
            "times_reported": 1,
            "score": 0.0,
            "scored_by": "pending",
        },
        keys=["course", "prompt_id", "normalized_sha256"],
    )
    row = session.scalars(
        sa.select(Report)
        .where(
            Report.course == report.course,
            Report.prompt_id == report.prompt_id,
            Report.normalized_sha256 == key,
        )
        .execution_options(populate_existing=True)
    ).one()
    if created:
        _add_reporter(session, row.id, report.reporter_id)
    return row, created


def _add_reporter(session: Session, report_id: str, reporter_id: str) -> bool:
    """True when this reporter had not sent this answer before."""
    return insert_ignoring_duplicates(
        session,
        ReportReporter,
        {"report_id": report_id, "reporter_id": reporter_id},
        keys=["report_id", "reporter_id"],
    )


def _is_accepted(session: Session, course: str, prompt_id: str, key: str) -> bool:
    return (
        session.scalar(
            sa.select(AcceptedTranslation.id).where(
                AcceptedTranslation.course == course,
                AcceptedTranslation.prompt_id == prompt_id,
                AcceptedTranslation.normalized_sha256 == key,
            )
        )
        is not None
    )


# --- queue -----------------------------------------------------------------------------------


def encode_cursor(score: float, report_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([score, report_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        score, report_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(score), str(report_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidInput("cursor is not one this service handed out") from None


def queue(
    session: Session, *, course: str, limit: int, cursor: str | None
) -> tuple[list[QueueItemRead], str | None, int]:
    """Open reports of ``course``, highest score first (ties by id); items, next cursor, total."""
    known = sa.select(CoursePrompt.prompt_id).where(CoursePrompt.course == course).limit(1)
    if session.scalar(known) is None:
        raise NotFound(f"no course {course!r}")
    base = sa.select(Report).where(Report.course == course, Report.decision.is_(None))
    total = session.scalar(sa.select(sa.func.count()).select_from(base.subquery())) or 0
    query = base
    if cursor is not None:
        score, report_id = _decode_cursor(cursor)
        query = query.where(
            sa.or_(Report.score < score, sa.and_(Report.score == score, Report.id > report_id))
        )
    rows = list(session.scalars(query.order_by(Report.score.desc(), Report.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    prompts = prompt_texts(session, rows)
    accepted = accepted_lists(session, {(r.course, r.prompt_id) for r in rows})
    items = []
    for row in rows:
        translations = [text for text, _ in accepted.get((row.course, row.prompt_id), [])]
        nearest = nearest_accepted(row.answer, translations)
        items.append(
            QueueItemRead(
                report_id=row.id,
                course=row.course,
                prompt_id=row.prompt_id,
                prompt=prompts[(row.course, row.prompt_id)],
                answer=row.answer,
                times_reported=row.times_reported,
                score=row.score,
                scored_by=row.scored_by,
                nearest_accepted=nearest,
                diff=word_diff(row.answer, nearest) if nearest is not None else [],
            )
        )
    next_cursor = encode_cursor(rows[-1].score, rows[-1].id) if more and rows else None
    return items, next_cursor, total


# --- decisions -------------------------------------------------------------------------------


def decide(session: Session, *, report_id: str, accept: bool, scorer: Scorer) -> DecisionRead:
    """Record a decision once: a conditional UPDATE, so of two racing decisions one wins."""
    # The UPDATE is the transaction's first statement: on SQLite it takes the write lock before
    # anything is read, on PostgreSQL the WHERE is re-checked after a concurrent commit.
    result = cast(
        CursorResult[Any],
        session.execute(
            sa.update(Report)
            .where(Report.id == report_id, Report.decision.is_(None))
            .values(decision=accept)
            .execution_options(synchronize_session=False)
        ),
    )
    report = session.get(Report, report_id, populate_existing=True)
    if report is None:
        raise NotFound("no such report")
    if result.rowcount != 1:
        raise AlreadyDecided()
    notices = _close(session, report, accept=accept, add_translation=accept)
    rescored = 0
    if accept:
        others = open_reports(session, course=report.course, prompt_ids={report.prompt_id})
        rescored = rescore(session, scorer, others)
    return DecisionRead(
        report_id=report.id, accepted=accept, rescored=rescored, thank_you_notices=notices
    )


def _close(session: Session, report: Report, *, accept: bool, add_translation: bool) -> int:
    """Mark ``report`` decided, forget its reporters and queue thank-yous; returns notices."""
    report.decision = accept
    reporters = list(
        session.scalars(
            sa.select(ReportReporter.reporter_id).where(ReportReporter.report_id == report.id)
        )
    )
    session.execute(sa.delete(ReportReporter).where(ReportReporter.report_id == report.id))
    if add_translation and not _is_accepted(
        session, report.course, report.prompt_id, report.normalized_sha256
    ):
        last = session.scalar(
            sa.select(sa.func.max(AcceptedTranslation.position)).where(
                AcceptedTranslation.course == report.course,
                AcceptedTranslation.prompt_id == report.prompt_id,
            )
        )
        session.add(
            AcceptedTranslation(
                course=report.course,
                prompt_id=report.prompt_id,
                position=(last or 0) + 1,
                text=report.answer,
                normalized_sha256=report.normalized_sha256,
                source_report_id=report.id,
            )
        )
    if not accept:
        return 0
    prompt = session.get(CoursePrompt, (report.course, report.prompt_id))
    prompt_text = prompt.text if prompt is not None else ""
    for reporter_id in reporters:
        session.add(
            ThankYouNotice(
                reporter_id=reporter_id,
                course=report.course,
                prompt=prompt_text,
                answer=report.answer,
            )
        )
    session.flush()
    return len(reporters)


# --- outbox ----------------------------------------------------------------------------------


def list_outbox(session: Session, *, limit: int) -> list[ThankYouRead]:
    rows = session.scalars(sa.select(ThankYouNotice).order_by(ThankYouNotice.id).limit(limit))
    return [
        ThankYouRead(
            id=row.id,
            reporter_id=row.reporter_id,
            course=row.course,
            prompt=row.prompt,
            answer=row.answer,
        )
        for row in rows
    ]


def acknowledge(session: Session, *, notice_id: str) -> None:
    """The notice was sent: delete it and with it the reporter id."""
    result = cast(
        CursorResult[Any],
        session.execute(sa.delete(ThankYouNotice).where(ThankYouNotice.id == notice_id)),
    )
    if result.rowcount != 1:
        raise NotFound("no such thank-you notice")
