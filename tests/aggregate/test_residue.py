"""A release cycle that released or purged clips vacuums their dead rows away (P3, P4)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from aggregate.jobs import run_release_cycle
from aggregate.residue import CLIP_TABLES
from core.db import Database
from core.storage import BlobStore
from policies.policy import Policy
from tests.aggregate.clips import Seed
from tests.keys import keys_for


def _dead_tuples(database: Database, table: str) -> int:
    with database.engine.begin() as connection:
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        count: int = connection.execute(
            sa.text("SELECT dead_tuple_count FROM pgstattuple(:table)"), {"table": table}
        ).scalar_one()
    return count


def _vacuumed(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT relname FROM pg_stat_user_tables WHERE vacuum_count > 0")
        ).scalars()
        return set(rows)


@pytest.mark.postgres
def test_release_cycle_vacuums_the_clip_tables_on_postgres(
    fresh_postgres_url: str, store: BlobStore, policy: Policy, seed: Seed
) -> None:
    database = Database(fresh_postgres_url)
    database.upgrade()
    try:
        seed(database, store, digit=3, speakers=policy.k)
        with database.engine.begin() as connection:  # dead row versions: the probe sees them
            connection.exec_driver_sql("UPDATE pending_clips SET slot = slot")
        assert _dead_tuples(database, "pending_clips") > 0

        report = run_release_cycle(
            database=database, keys=keys_for(database), store=store, policy=policy, interval_s=86400
        )

        assert len(report.released) == 1
        assert _dead_tuples(database, "pending_clips") == 0
        assert _vacuumed(database) >= set(CLIP_TABLES)
    finally:
        database.dispose()
