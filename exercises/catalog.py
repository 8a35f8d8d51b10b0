"""The exercise usage catalog: which exercises are common enough to collect clips for (P5).

A clip for an exercise unknown to the catalog, or used by fewer than ``min_exercise_learners``
learners in the recent window, is refused before its audio is read.

The upload route answers that early question from ``EligibilityCache``, an in-memory copy of the
rows of the exercises recently uploaded to, so most uploads do not pay a database round trip
before their audio is read. The cache can only speed up an acceptance, never decide one: a
refusal is re-read from the database before it is given, and an accepted clip's exercise is
checked again from the database inside the transaction that writes its row
(``ingest.service.store_clip``). A catalog change therefore
takes effect at once for refusals on every replica; an entry of the copy is read again after
``ttl_s`` seconds, and the copy is emptied at once in the process that served
``PUT /v1/exercises/usage``.
"""

from __future__ import annotations

import csv
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from core.db import Database, with_row_lock
from core.errors import ExerciseNotEligible, InvalidInput
from exercises.models import ExerciseUsageCreate, ExerciseUsageUpdate
from exercises.tables import ExerciseUsage

E = TypeVar("E", ExerciseUsageCreate, ExerciseUsageUpdate)
CATALOG_FIELDS = ("learners", "language", "text", "course", "skill")


def _unique(entries: Iterable[E]) -> dict[str, E]:
    rows: dict[str, E] = {}
    for entry in entries:
        if entry.exercise_id in rows:
            raise InvalidInput(f"exercise {entry.exercise_id!r} is listed twice")
        rows[entry.exercise_id] = entry
    return rows


def replace_usage(session: Session, entries: Iterable[ExerciseUsageCreate]) -> int:
    """Replace the whole catalog with ``entries``; returns how many exercises it now holds."""
    rows = _unique(entries)
    session.execute(sa.delete(ExerciseUsage))
    session.add_all(ExerciseUsage(**entry.model_dump()) for entry in rows.values())
    session.flush()
    return len(rows)


def update_usage(session: Session, entries: Iterable[ExerciseUsageUpdate]) -> tuple[int, int]:
    """Add or change catalog entries, keeping the others; returns ``(added, changed)``.

    Only the fields an entry sets are written (a field set to null is cleared); a new
    exercise must give ``learners``. Nothing is written unless every entry is valid.
    """
    rows = _unique(entries)
    existing = {
        row.exercise_id: row
        for row in session.execute(
            with_row_lock(sa.select(ExerciseUsage).where(ExerciseUsage.exercise_id.in_(list(rows))))
        ).scalars()
    }
    added = changed = 0
    for exercise_id, entry in rows.items():
        given = {
            name: getattr(entry, name) for name in CATALOG_FIELDS if name in entry.model_fields_set
        }
        row = existing.get(exercise_id)
        if row is None:
            if given.get("learners") is None:
                raise InvalidInput(f"exercise {exercise_id!r} is new: give its learners")
            session.add(ExerciseUsage(exercise_id=exercise_id, **given))
            added += 1
            continue
        if given.get("learners", row.learners) is None:
            raise InvalidInput(f"exercise {exercise_id!r}: learners cannot be cleared")
        for name, value in given.items():
            setattr(row, name, value)
        changed += 1
    session.flush()
    return added, changed


def count_usage(session: Session) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(ExerciseUsage)).scalar_one()


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
    """Learner counts of the exercises uploads recently named, each kept for ``ttl_s`` seconds.

    Safe across threads. A miss reads that one exercise's row (an indexed lookup), never the
    whole catalog: a catalog of any size costs an upload one small query per exercise and
    ``ttl_s``, and the copy holds at most ``max_entries`` exercises (the oldest read goes
    first). ``is_eligible`` is answered from memory while an entry is fresh; the caller
    re-checks a refusal with ``require_eligible`` against the database (see the module
    docstring), so a stale entry can delay an answer, never change it.
    """

    def __init__(
        self, database: Database, *, ttl_s: float = 10.0, max_entries: int = 65_536
    ) -> None:
        self._database = database
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        # exercise id → (learners, or None when the catalog does not know it; when read).
        self._entries: dict[str, tuple[int | None, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def invalidate(self) -> None:
        with self._lock:
            self._entries.clear()

    def cached(self, exercise_id: str, *, min_learners: int) -> bool | None:
        """True/False from a fresh entry, None when the exercise must be read first."""
        entry = self._entries.get(exercise_id)
        if entry is None or time.monotonic() - entry[1] > self.ttl_s:
            return None
        learners = entry[0]
        return learners is not None and learners >= min_learners

    def is_eligible(self, exercise_id: str, *, min_learners: int) -> bool:
        """Blocking (may read the catalog): call it from a worker thread."""
        answer = self.cached(exercise_id, min_learners=min_learners)
        if answer is None:
            learners = self._read(exercise_id)
            answer = learners is not None and learners >= min_learners
        return answer

    def _read(self, exercise_id: str) -> int | None:
        read_at = time.monotonic()
        with self._database.connection() as connection:
            learners: int | None = connection.execute(
                _LEARNERS, {"exercise_id": exercise_id}
            ).scalar_one_or_none()
        with self._lock:
            # Re-inserted, so the dict's order is the order of reads: the oldest goes first.
            self._entries.pop(exercise_id, None)
            self._entries[exercise_id] = (learners, read_at)
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]
        return learners


_CACHES: weakref.WeakKeyDictionary[Database, EligibilityCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def eligibility_cache(database: Database) -> EligibilityCache:
    """The process's one cache for ``database``."""
    with _CACHES_LOCK:
        cache = _CACHES.get(database)
        if cache is None:
            cache = _CACHES[database] = EligibilityCache(database)
        return cache


CSV_COLUMNS = ("exercise_id", "learners", "language", "text", "course", "skill")


def read_usage_csv(path: Path, *, update: bool = False) -> list[Any]:
    """Rows of a CSV with columns ``exercise_id,learners[,language,text,course,skill]``
    (header required). With ``update``, rows are upsert entries: an empty cell leaves that
    field as it is, and ``learners`` may be left out for an exercise already cataloged."""
    model: type[ExerciseUsageCreate | ExerciseUsageUpdate] = (
        ExerciseUsageUpdate if update else ExerciseUsageCreate
    )
    required = {"exercise_id"} if update else {"exercise_id", "learners"}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = set(reader.fieldnames or ())
            missing = required - columns
            if missing:
                raise InvalidInput(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
            unknown = columns - set(CSV_COLUMNS)
            if unknown:
                raise InvalidInput(f"{path.name}: unknown column(s) {', '.join(sorted(unknown))}")
            entries = []
            for line, row in enumerate(reader, start=2):
                cells = {name: (row.get(name) or "").strip() for name in CSV_COLUMNS}
                fields: dict[str, Any] = {
                    name: value for name, value in cells.items() if value or not update
                }
                try:
                    if "learners" in fields:
                        fields["learners"] = int(fields["learners"])
                    for name in ("language", "text", "course", "skill"):
                        if fields.get(name) == "":
                            fields[name] = None
                    entries.append(model(**fields))
                except (ValueError, ValidationError) as exc:
                    reason = (
                        exc.errors()[0]["msg"]
                        if isinstance(exc, ValidationError)
                        else ("learners is not an integer")
                    )
                    raise InvalidInput(f"{path.name} line {line}: {reason}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {type(exc).__name__}") from None
    return entries
