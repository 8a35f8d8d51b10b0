"""Role keys: shown once, stored hashed, each route admits only its roles (P11)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from chorus.cli import app as cli_app
from core.auth import Role, create_key, require_roles, revoke_key, role_of
from core.db import Database
from core.settings import Settings
from core.tables import ApiKey


def _guarded_app(app: FastAPI) -> FastAPI:
    @app.get("/test-only/researchers", dependencies=[Depends(require_roles(Role.RESEARCHER))])
    def researchers_only() -> dict[str, str]:
        return {"ok": "yes"}

    return app


def test_missing_unknown_wrong_and_right_keys(
    app: FastAPI, client: TestClient, role_keys: dict[Role, str]
) -> None:
    _guarded_app(app)
    url = "/test-only/researchers"
    missing = client.get(url)
    assert missing.status_code == 401
    assert missing.json()["code"] == "unauthorized"
    assert missing.headers["content-type"] == "application/problem+json"
    unknown = client.get(url, headers={"X-API-Key": "chk_not-a-real-key"})
    assert unknown.status_code == 401
    for role in Role:
        response = client.get(url, headers={"X-API-Key": role_keys[role]})
        if role is Role.RESEARCHER:
            assert response.status_code == 200
        else:
            assert response.status_code == 403
            assert response.json()["code"] == "forbidden"


def test_keys_are_stored_only_as_hashes(app: FastAPI, client: TestClient) -> None:
    database: Database = app.state.database
    with database.session() as session:
        key = create_key(session, role=Role.AUDITOR, name="auditor one")
    with database.engine.connect() as connection:
        rows = connection.execute(sa.select(ApiKey.__table__)).all()
    assert len(rows) == 1
    assert key not in repr(rows)
    assert rows[0].key_hash != key
    assert len(rows[0].key_hash) == 64


def test_revoked_key_is_refused(app: FastAPI, client: TestClient) -> None:
    _guarded_app(app)
    database: Database = app.state.database
    with database.session() as session:
        key = create_key(session, role=Role.RESEARCHER, name="to revoke")
        key_id = session.execute(sa.select(ApiKey.id)).scalar_one()
    assert client.get("/test-only/researchers", headers={"X-API-Key": key}).status_code == 200
    with database.session() as session:
        assert revoke_key(session, key_id=key_id)
    assert client.get("/test-only/researchers", headers={"X-API-Key": key}).status_code == 401


def test_cli_creates_a_working_key_and_prints_it_once(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    monkeypatch.setenv("CHORUS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHORUS_STORAGE_URL", settings.storage_url)
    result = CliRunner().invoke(cli_app, ["keys", "create", "--role", "admin", "--name", "ops"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("chk_")
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            assert role_of(session, key) is Role.ADMIN
    finally:
        database.dispose()
