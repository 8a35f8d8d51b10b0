"""The upload route's eligibility cache reads one exercise's row at a time, keeps it ``ttl_s``,
holds at most ``max_entries`` exercises and never loads the whole catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.db import Database
from exercises.catalog import EligibilityCache, replace_usage
from exercises.models import ExerciseUsageCreate
from exercises.tables import ExerciseUsage


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'catalog.db'}")
    database.upgrade()
    with database.session(write=True) as session:
        replace_usage(
            session,
            [ExerciseUsageCreate(exercise_id=f"ex-{n}", learners=n) for n in range(1, 2001)],
        )
    yield database
    database.dispose()


def _statements(database: Database) -> list[str]:
    seen: list[str] = []
    sa.event.listen(
        database.engine,
        "before_cursor_execute",
        lambda _conn, _cursor, statement, *_: seen.append(statement),
    )
    return seen


def test_a_miss_reads_one_row_and_a_hit_reads_none(database: Database) -> None:
    cache = EligibilityCache(database)
    statements = _statements(database)
    assert cache.cached("ex-700", min_learners=500) is None
    assert cache.is_eligible("ex-700", min_learners=500)
    assert not cache.is_eligible("ex-10", min_learners=500)
    assert not cache.is_eligible("unknown", min_learners=1)
    reads = [s for s in statements if "exercise_usage" in s]
    assert len(reads) == 3
    assert all("WHERE" in read for read in reads)  # one exercise each, never the catalog
    assert len(cache) == 3

    statements.clear()
    assert cache.is_eligible("ex-700", min_learners=500)
    assert cache.cached("ex-10", min_learners=500) is False
    assert cache.cached("unknown", min_learners=1) is False
    assert [s for s in statements if "exercise_usage" in s] == []


def test_an_entry_is_read_again_after_its_ttl(database: Database) -> None:
    cache = EligibilityCache(database, ttl_s=0.0)
    assert not cache.is_eligible("ex-10", min_learners=500)
    with database.session(write=True) as session:
        session.execute(
            sa.update(ExerciseUsage)
            .where(ExerciseUsage.exercise_id == "ex-10")
            .values(learners=900)
        )
    assert cache.cached("ex-10", min_learners=500) is None  # stale
    assert cache.is_eligible("ex-10", min_learners=500)


def test_invalidate_forgets_every_entry(database: Database) -> None:
    cache = EligibilityCache(database)
    for n in (1, 2, 3):
        cache.is_eligible(f"ex-{n}", min_learners=1)
    cache.invalidate()
    assert len(cache) == 0
    assert cache.cached("ex-1", min_learners=1) is None


def test_the_copy_holds_at_most_max_entries_and_drops_the_oldest_read(
    database: Database,
) -> None:
    cache = EligibilityCache(database, max_entries=100)
    for n in range(1, 1001):
        cache.is_eligible(f"ex-{n}", min_learners=1)
    assert len(cache) == 100
    assert cache.cached("ex-1000", min_learners=1) is True
    assert cache.cached("ex-901", min_learners=1) is True
    assert cache.cached("ex-900", min_learners=1) is None
