"""``chorus audit`` on the scale-out back ends: PostgreSQL (live-schema types, ctid insertion
order, every row scanned) and a SeaweedFS S3 bucket (objects listed and read through S3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chorus.app import create_app
from chorus.devservers_postgres import provision_postgres_database
from core.settings import Settings
from tests.policies.audited import RunAudit, build_audited_state


@pytest.fixture
def own_postgres_database() -> Iterator[str]:
    """A database of this test's own: the test alters its schema."""
    with provision_postgres_database(prefix="chorus_audit") as url:
        yield url


@pytest.mark.postgres
def test_audit_on_postgres(
    own_postgres_database: str,
    make_settings: Callable[..., Settings],
    run_audit_cli: RunAudit,
    fsdd_dir: Path,
) -> None:
    url = own_postgres_database
    settings = make_settings(database_url=url)
    app = create_app(settings)
    with TestClient(app) as client:
        state = build_audited_state(app, client, settings, fsdd_dir)
        clean = run_audit_cli(database_url=url)
        assert clean.exit_code == 0, clean.stdout + clean.stderr

        state.sql("ALTER TABLE pending_clips ADD COLUMN received_at timestamptz")
        state.sql("ALTER TABLE buckets ADD COLUMN waited interval")
        state.sql(
            "UPDATE releases SET statistics = :s WHERE id = :id",
            s='{"who": "learner-000"}',
            id=state.release_id,
        )
        result = run_audit_cli("--canary", "learner-000", database_url=url)
    assert result.exit_code == 1
    subjects = {(f["check"], f["subject"]) for f in result.report["findings"]}
    assert subjects == {
        ("timestamp_column", "pending_clips.received_at"),
        ("timestamp_column", "buckets.waited"),
        ("canary_found", "releases.statistics"),
    }


def test_audit_on_s3(
    s3_store_url: str,
    make_settings: Callable[..., Settings],
    run_audit_cli: RunAudit,
    fsdd_dir: Path,
) -> None:
    settings = make_settings(storage_url=s3_store_url)
    app = create_app(settings)
    with TestClient(app) as client:
        state = build_audited_state(app, client, settings, fsdd_dir)
        clean = run_audit_cli(storage_url=s3_store_url)
        assert clean.exit_code == 0, clean.stdout + clean.stderr
        state.put_clip(state.released_clip_keys()[0], None)
        key = state.pending_keys[0]
        state.store.put(key, state.store.get(key) + b"learner-100")
        result = run_audit_cli("--canary", "learner-100", storage_url=s3_store_url)
    assert result.exit_code == 1
    assert result.finding_checks == {
        "release_object_count_mismatch",
        "canary_found",
        "pending_unsealed",  # the appended bytes leave the sealed object off its size class
    }
