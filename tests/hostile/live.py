"""The running apps of the hostile-input tests: an app in a test client with a key per role,
and a real server with a small upload cap, and the settings both run on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from chorus.app import create_app
from core.auth import Role, create_key
from core.settings import Settings
from ingest.consent import mint_token
from tests.consent import ConsentKeys

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


def start_live_app(settings: Settings, consent_keys: ConsentKeys) -> Iterator[LiveApp]:
    """The app of ``settings`` entered in a test client, with a key per role and the usage
    catalog loaded; yields once, and leaves the lifespan when resumed."""
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


@dataclass
class LiveServer:
    url: str
    host: str
    port: int
    live: LiveApp
