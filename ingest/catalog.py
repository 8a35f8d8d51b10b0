"""The exercise usage catalog: which exercises are common enough to collect clips for (P5).

A clip for an exercise unknown to the catalog, or used by fewer than ``min_exercise_learners``
learners in the recent window, is refused before its audio is read.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from core.errors import ExerciseNotEligible, InvalidInput
from ingest.models import ExerciseUsageCreate
from ingest.tables import ExerciseUsage


def replace_usage(session: Session, entries: Iterable[ExerciseUsageCreate]) -> int:
    """Replace the whole catalog with ``entries``; returns how many exercises it now holds."""
    rows: dict[str, ExerciseUsageCreate] = {}
    for entry in entries:
        if entry.exercise_id in rows:
            raise InvalidInput(f"exercise {entry.exercise_id!r} is listed twice")
        rows[entry.exercise_id] = entry
    session.execute(sa.delete(ExerciseUsage))
    session.add_all(
        ExerciseUsage(exercise_id=e.exercise_id, learners=e.learners, language=e.language)
        for e in rows.values()
    )
    session.flush()
    return len(rows)


def count_eligible(session: Session, *, min_learners: int) -> int:
    return session.execute(
        sa.select(sa.func.count())
        .select_from(ExerciseUsage)
        .where(ExerciseUsage.learners >= min_learners)
    ).scalar_one()


def require_eligible(session: Session, *, exercise_id: str, min_learners: int) -> None:
    learners = session.execute(
        sa.select(ExerciseUsage.learners).where(ExerciseUsage.exercise_id == exercise_id)
    ).scalar_one_or_none()
    if learners is None or learners < min_learners:
        raise ExerciseNotEligible(
            f"the exercise is unknown or used by fewer than {min_learners} learners"
        )


def read_usage_csv(path: Path) -> list[ExerciseUsageCreate]:
    """Rows of a CSV with columns ``exercise_id,learners[,language]`` (header required)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"exercise_id", "learners"} - set(reader.fieldnames or ())
            if missing:
                raise InvalidInput(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
            entries = []
            for line, row in enumerate(reader, start=2):
                try:
                    entries.append(
                        ExerciseUsageCreate(
                            exercise_id=(row.get("exercise_id") or "").strip(),
                            learners=int((row.get("learners") or "").strip()),
                            language=(row.get("language") or "").strip() or None,
                        )
                    )
                except (ValueError, ValidationError) as exc:
                    reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else (
                        "learners is not an integer"
                    )
                    raise InvalidInput(f"{path.name} line {line}: {reason}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {type(exc).__name__}") from None
    return entries
