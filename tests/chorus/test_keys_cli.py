"""``chorus keys create | list | revoke``: a revoked key answers 401, and both are audited."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from chorus.app import create_app
from chorus.cli import app as cli
from core.db import Database
from core.settings import Settings, reset_settings_cache
from policies.tables import AuditEntry

runner = CliRunner()


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    settings = make_settings()
    monkeypatch.setenv("CHORUS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHORUS_STORAGE_URL", settings.storage_url)
    reset_settings_cache()
    yield settings
    reset_settings_cache()


def test_list_shows_ids_roles_names_and_never_a_key(settings: Settings) -> None:
    empty = runner.invoke(cli, ["keys", "list"])
    assert empty.exit_code == 0
    assert "no role keys yet" in empty.output
    key = runner.invoke(cli, ["keys", "create", "--role", "researcher", "--name", "lab"])
    assert key.exit_code == 0, key.output
    listed = runner.invoke(cli, ["keys", "list"])
    assert listed.exit_code == 0
    (line,) = listed.output.splitlines()
    key_id, role, state, name = line.split(maxsplit=3)
    assert (role, state, name) == ("researcher", "active", "lab")
    assert len(key_id) == 32
    assert key.output.strip() not in listed.output


def test_a_revoked_key_answers_401_and_the_revocation_is_audited(settings: Settings) -> None:
    key = runner.invoke(cli, ["keys", "create", "--role", "researcher", "--name", "lab"])
    key_id = runner.invoke(cli, ["keys", "list"]).output.split()[0]
    with TestClient(create_app(settings)) as client:
        headers = {"X-API-Key": key.output.strip()}
        assert client.get("/v1/releases", headers=headers).status_code == 200
        revoked = runner.invoke(cli, ["keys", "revoke", key_id])
        assert revoked.exit_code == 0, revoked.output
        assert revoked.output.strip() == f"revoked {key_id}"
        answer = client.get("/v1/releases", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["code"] == "unauthorized"
    assert "revoked" in runner.invoke(cli, ["keys", "list"]).output
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            kinds = session.scalars(sa.select(AuditEntry.kind).order_by(AuditEntry.seq)).all()
    finally:
        database.dispose()
    assert "key_created" in kinds
    assert kinds[-1] == "key_revoked"


def test_revoking_an_unknown_id_fails_with_one_line(settings: Settings) -> None:
    result = runner.invoke(cli, ["keys", "revoke", "0" * 32])
    assert result.exit_code == 2
    assert "no role key with id" in result.output
