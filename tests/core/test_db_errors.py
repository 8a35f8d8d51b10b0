"""A database that cannot be reached is named: ``chorus db upgrade`` (and every command that
migrates first) says which server, and why, in one line without the password."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from chorus.cli import app
from core.db import describe, upgrade
from core.errors import DatabaseUnavailable
from core.settings import reset_settings_cache
from tests.live_server import free_port


def test_upgrade_against_a_closed_port_names_the_server_and_the_reason() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://chorus:hunter2-secret@127.0.0.1:{port}/chorus"
    with pytest.raises(DatabaseUnavailable) as raised:
        upgrade(url)
    detail = raised.value.detail
    assert f"127.0.0.1:{port}" in detail
    assert "database chorus" in detail
    assert "refused" in detail.lower()
    assert "hunter2-secret" not in detail


def test_db_upgrade_against_an_unknown_host_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CHORUS_DATABASE_URL", "postgresql+psycopg://chorus:pw-secret@no-such-host.invalid/chorus"
    )
    reset_settings_cache()
    result = CliRunner().invoke(app, ["db", "upgrade"])
    reset_settings_cache()
    assert result.exit_code == 2
    assert "no-such-host.invalid" in result.output
    assert "temporarily unavailable" not in result.output
    assert "pw-secret" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_describe_names_backend_host_port_and_database() -> None:
    assert describe("postgresql+psycopg://u:p@db.example:6543/prod") == (
        "the postgresql server at db.example:6543 (database prod)"
    )
    assert describe("sqlite:///var/chorus.db") == "the SQLite database var/chorus.db"
