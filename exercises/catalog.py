"""The exercise usage catalog: which exercises are common enough to collect clips for (P5).

A clip for an exercise unknown to the catalog, or used by fewer than ``min_exercise_learners``
learners in the recent window, is refused before its audio is read.

The upload route answers that early question from ``EligibilityCache``, an in-memory copy of the
catalog, so an upload does not pay a database round trip before its audio is read. The cache can
only speed up an acceptance, never decide one: a refusal is re-read from the database before it
is given, and an accepted clip's exercise is checked again from the database inside the
transaction that writes its row (``ingest.service.store_clip``). A catalog change therefore
takes effect at once for refusals on every replica; the copy itself is replaced after
``ttl_s`` seconds, and at once in the process that served ``PUT /v1/exercises/usage``.
"""

from __future__ import annotations

import csv
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from core.db import Database
from core.errors import ExerciseNotEligible, InvalidInput
from exercises.models import ExerciseUsageCreate
from exercises.tables import ExerciseUsage


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


_LEARNERS = sa.select(ExerciseUsage.learners).where(
    ExerciseUsage.exercise_id == sa.bindparam("exercise_id")
)


def require_eligible(
    session: Session | sa.Connection, *, exercise_id: str, min_learners: int
) -> None:
    learners = session.execute(_LEARNERS, {"exercise_id": exercise_id}).scalar_one_or_none()
    if learners is None or learners < min_learners:
        raise ExerciseNotEligible(
            f"the exercise is unknown or used by fewer than {min_learners} learners"
        )


class EligibilityCache:
    """An in-memory copy of the usage catalog (exercise id → learners), replaced every ``ttl_s``.

    Safe across threads. ``is_eligible`` is answered from memory while the copy is fresh; the
    caller re-checks a refusal with ``require_eligible`` against the database (see the module
    docstring), so a stale copy can delay an answer, never change it.
    """

    def __init__(self, database: Database, *, ttl_s: float = 10.0) -> None:
        self._database = database
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._learners: dict[str, int] | None = None
        self._loaded_at = 0.0

    def invalidate(self) -> None:
        with self._lock:
            self._learners = None

    def cached(self, exercise_id: str, *, min_learners: int) -> bool | None:
        """True/False from a fresh copy, None when the copy must be (re)loaded first."""
        learners = self._learners
        if learners is None or time.monotonic() - self._loaded_at > self.ttl_s:
            return None
        count = learners.get(exercise_id)
        return count is not None and count >= min_learners

    def is_eligible(self, exercise_id: str, *, min_learners: int) -> bool:
        """Blocking (may read the catalog): call it from a worker thread."""
        answer = self.cached(exercise_id, min_learners=min_learners)
        if answer is None:
            self.reload()
            answer = self.cached(exercise_id, min_learners=min_learners)
        return bool(answer)

    def reload(self) -> None:
        with self._lock:
            started = time.monotonic()
            with self._database.session() as session:
                rows = session.execute(
                    sa.select(ExerciseUsage.exercise_id, ExerciseUsage.learners)
                ).all()
            self._learners = {exercise_id: learners for exercise_id, learners in rows}
            self._loaded_at = started


_CACHES: weakref.WeakKeyDictionary[Database, EligibilityCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def eligibility_cache(database: Database) -> EligibilityCache:
    """The process's one cache for ``database``."""
    with _CACHES_LOCK:
        cache = _CACHES.get(database)
        if cache is None:
            cache = _CACHES[database] = EligibilityCache(database)
        return cache


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
