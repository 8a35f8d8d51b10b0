"""Operational routes and start-up behaviour of the service."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chorus.app import create_app
from core.errors import ConfigurationError
from core.settings import Settings
from tests.keys import TEST_KEY_STORE_URL


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": "ok",
        "storage": "ok",
        "key_store": "ok",
        "idempotency_store": "ok",
    }


def test_what_the_running_app_holds_is_out_of_the_collectors_sight(settings: Settings) -> None:
    """A full collection walks only what requests made, not the process's own few hundred
    thousand objects: otherwise it stops the event loop for a quarter of a second."""
    before = gc.get_freeze_count()
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > before + 10_000
    assert gc.get_freeze_count() == 0  # let go at shutdown


def test_readyz_reports_an_unreachable_database(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    app = create_app(settings)
    response = TestClient(app, raise_server_exceptions=False).get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["checks"]["database"] == "database_unavailable"
    assert response.json()["checks"]["storage"] == "ok"
    assert int(response.headers["retry-after"]) > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"storage_url": "ftp://example/blobs"}, "storage"),
        ({"database_url": "oracle://x/y"}, "database"),
        ({"policy": "no-such-policy"}, "policy"),
        ({"database_url": "sqlite://"}, "in-memory"),
    ],
)
def test_bad_configuration_is_refused(
    make_settings: Callable[..., Settings], overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_app(make_settings(**overrides))


def _serve(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CHORUS_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
        "CHORUS_STORAGE_URL": f"file://{tmp_path / 'blobs'}",
        "CHORUS_SCHEDULER_ENABLED": "false",
        "CHORUS_PORT": "0",
        "CHORUS_KEY_STORE_URL": TEST_KEY_STORE_URL,  # the run's own, removed at its end
    }
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "chorus", "serve"],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


@pytest.mark.parametrize(
    "env",
    [
        {"CHORUS_STORAGE_URL": "gopher://nowhere"},
        {"CHORUS_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"},
        {"CHORUS_POLICY": "/nonexistent/policy.toml"},
    ],
)
def test_serve_refuses_bad_configuration_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    result = _serve(env, tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chorus: ")
    assert "Traceback" not in result.stderr


def test_unsafe_policy_file_is_refused_with_one_line(tmp_path: Path) -> None:
    policy = tmp_path / "unsafe.toml"
    policy.write_text('name = "unsafe"\nversion = 1\nk = 1\n')
    result = _serve({"CHORUS_POLICY": str(policy)}, tmp_path)
    assert result.returncode == 2
    assert "k" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
