"""Fixtures of the hostile-input tests: a running app with a key per role, a real server.

The app runs on the embedded default (SQLite + file store) with the demo policy; the real
server (uvicorn on loopback, from ``chorus.demo``) uses a policy whose upload cap is small, so
oversize bodies can be sent cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chorus.app import create_app
from chorus.demo import BackgroundServer
from core.auth import Role, create_key
from core.settings import Settings
from ingest.consent import mint_token
from tests.conftest import ConsentKeys

SMALL_CAP_BYTES = 100_000
SMALL_CAP_POLICY = f"""
name = "hostile"
version = 1
k = 5
min_exercise_learners = 100
max_upload_bytes = {SMALL_CAP_BYTES}
release_interval = "hourly"
"""
EXERCISES = [{"exercise_id": f"digit-{d}", "learners": 500} for d in range(10)]


@dataclass
class LiveApp:
    app: FastAPI
    client: TestClient
    keys: dict[Role, str]
    token: Callable[..., str]

    def headers(self, role: Role) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


def hostile_settings(folder: Path, consent_keys: ConsentKeys, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{folder / 'chorus.db'}",
        "storage_url": f"file://{folder / 'blobs'}",
        "policy": "demo",
        "consent_public_key": consent_keys.public_pem,
        "scheduler_enabled": False,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def _start(settings: Settings, consent_keys: ConsentKeys) -> Iterator[LiveApp]:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        with app.state.database.session() as session:
            keys = {role: create_key(session, role=role, name=f"hostile {role}") for role in Role}
        live = LiveApp(
            app=app,
            client=client,
            keys=keys,
            token=lambda learner="learner-h", **claims: mint_token(
                consent_keys.private_key, learner_id=learner, **claims
            ),
        )
        response = client.put(
            "/v1/exercises/usage", json=EXERCISES, headers=live.headers(Role.ADMIN)
        )
        assert response.status_code == 200, response.text
        yield live


@pytest.fixture(scope="module")
def live_app(
    tmp_path_factory: pytest.TempPathFactory, consent_keys: ConsentKeys
) -> Iterator[LiveApp]:
    """One app (lifespan entered, decoder pool running) shared by a whole test module."""
    folder = tmp_path_factory.mktemp("hostile-app")
    yield from _start(hostile_settings(folder, consent_keys), consent_keys)


@dataclass
class LiveServer:
    url: str
    host: str
    port: int
    live: LiveApp


@pytest.fixture(scope="module")
def small_cap_server(
    tmp_path_factory: pytest.TempPathFactory, consent_keys: ConsentKeys
) -> Iterator[LiveServer]:
    """uvicorn on a free loopback port, with a 100 kB upload cap."""
    folder = tmp_path_factory.mktemp("hostile-server")
    policy = folder / "hostile.toml"
    policy.write_text(SMALL_CAP_POLICY, encoding="utf-8")
    settings = hostile_settings(folder, consent_keys, policy=str(policy))
    for live in _start(settings, consent_keys):
        # The TestClient above ran the schema migration and holds the lifespan; the real
        # server runs a second app on the same database and store, as a replica would.
        with BackgroundServer(create_app(settings)) as server:
            yield LiveServer(url=server.url, host=server.host, port=server.port, live=live)
