"""The schema comes from Alembic migrations, matches the models, and runs on both databases."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import aggregate.tables
import core.tables
import exercises.tables
import policies.tables
from core.db import MIGRATIONS_DIR, Base, alembic_config, current_revisions, make_engine, upgrade

_TABLE_MODULES = (core.tables, exercises.tables, aggregate.tables, policies.tables)
with contextlib.suppress(ImportError):
    import reports_ml.tables  # noqa: F401  (its tables join Base.metadata)

CLIP_AND_BUCKET_TABLES = ("buckets", "pending_clips", "releases", "released_clips")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    from chorus.devservers import provision_postgres_database

    with provision_postgres_database(prefix="chorus_migrations") as url:
        yield url


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"


def test_upgrade_reaches_head_and_matches_models(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)  # idempotent
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert current_revisions(database_url) == {head}
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], f"models and migrations disagree: {differences}"


def test_clip_and_bucket_tables_have_no_time_columns_or_counters(database_url: str) -> None:
    """P4: no timestamp column and no autoincrement id on clip or bucket tables."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        inspector = sa.inspect(engine)
        for table in CLIP_AND_BUCKET_TABLES:
            for column in inspector.get_columns(table):
                assert not isinstance(column["type"], sa.DateTime | sa.Time), (table, column)
                if column.get("primary_key"):
                    assert isinstance(column["type"], sa.String), (table, column)
            primary = inspector.get_pk_constraint(table)["constrained_columns"]
            assert primary == ["id"]
            id_type = next(c for c in inspector.get_columns(table) if c["name"] == "id")["type"]
            assert isinstance(id_type, sa.String)
    finally:
        engine.dispose()


def test_migrations_folder_is_shipped_with_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert any(MIGRATIONS_DIR.glob("versions/0001_*.py"))
    assert _TABLE_MODULES


@pytest.mark.postgres
def test_replicas_migrating_one_database_at_once_both_succeed() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from chorus.devservers import provision_postgres_database

    with provision_postgres_database(prefix="chorus_migrate_race") as url:
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(lambda _: upgrade(url), range(3)))
        assert results == [None, None, None]
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert current_revisions(url) == {head}
