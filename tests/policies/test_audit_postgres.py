"""``chorus audit`` on PostgreSQL: live-schema types, ctid insertion order, every row scanned."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from core.app import create_app
from core.settings import Settings
from tests.policies.conftest import RunAudit, build_audited_state

pytestmark = pytest.mark.postgres
ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    name = f"chorus_audit_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required for this test: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_audit_on_postgres(
    postgres_database: str,
    make_settings: Callable[..., Settings],
    run_audit_cli: RunAudit,
    fsdd_dir: Path,
) -> None:
    settings = make_settings(database_url=postgres_database)
    app = create_app(settings)
    with TestClient(app) as client:
        state = build_audited_state(app, client, settings, fsdd_dir)
        clean = run_audit_cli(database_url=postgres_database)
        assert clean.exit_code == 0, clean.stdout + clean.stderr

        state.sql("ALTER TABLE pending_clips ADD COLUMN received_at timestamptz")
        state.sql("ALTER TABLE buckets ADD COLUMN waited interval")
        state.sql(
            "UPDATE releases SET statistics = :s WHERE id = :id",
            s='{"who": "learner-000"}', id=state.release_id,
        )
        result = run_audit_cli("--canary", "learner-000", database_url=postgres_database)
    assert result.exit_code == 1
    subjects = {(f["check"], f["subject"]) for f in result.report["findings"]}
    assert subjects == {
        ("timestamp_column", "pending_clips.received_at"),
        ("timestamp_column", "buckets.waited"),
        ("canary_found", "releases.statistics"),
    }
