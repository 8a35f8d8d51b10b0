"""What the ``chorus serve`` processes of the end-to-end tests run on: a small policy, a
database migrated with a usage catalog where every test exercise is eligible."""

from __future__ import annotations

from collections.abc import Callable

from core.db import Database
from exercises.catalog import replace_usage
from exercises.models import ExerciseUsageCreate
from tests.e2e.procs import ChorusProcess

EXERCISES = ("digit-0", "digit-1", "digit-2", "digit-3")
SMALL_POLICY = """\
name = "e2e"
version = 1
k = 3
max_clips_per_contributor = 1
min_exercise_learners = 10
min_contributor_age = 16
accepted_consent_versions = ["speech-research-v1"]
release_interval = "hourly"
retention_cycles = 1000
"""


def prepare_database(url: str) -> Database:
    """Migrate ``url`` and load a usage catalog where every test exercise is eligible."""
    database = Database(url)
    database.upgrade()
    with database.session() as session:
        replace_usage(
            session, [ExerciseUsageCreate(exercise_id=e, learners=500) for e in EXERCISES]
        )
    return database


# ``chorus_server(database_url=…, storage_url=…, workers=1, **CHORUS_overrides)``: the fixture.
ServerFactory = Callable[..., ChorusProcess]
