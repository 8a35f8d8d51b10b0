"""Fixtures of the hostile-input tests: a running app with a key per role, a real server.

The app runs on the embedded default (SQLite + file store) with the demo policy; the real
server (uvicorn on loopback, from ``chorus.demo``) uses a policy whose upload cap is small, so
oversize bodies can be sent cheaply. Both, and the settings they run on, are in
``tests/hostile/live.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chorus.app import create_app
from chorus.demo import BackgroundServer
from tests.consent import ConsentKeys
from tests.hostile.live import (
    SMALL_CAP_POLICY,
    LiveApp,
    LiveServer,
    hostile_settings,
    start_live_app,
)


@pytest.fixture(scope="module")
def live_app(
    tmp_path_factory: pytest.TempPathFactory, consent_keys: ConsentKeys
) -> Iterator[LiveApp]:
    """One app (lifespan entered, decoder pool running) shared by a whole test module."""
    folder = tmp_path_factory.mktemp("hostile-app")
    yield from start_live_app(hostile_settings(folder, consent_keys), consent_keys)


@pytest.fixture(scope="module")
def small_cap_server(
    tmp_path_factory: pytest.TempPathFactory, consent_keys: ConsentKeys
) -> Iterator[LiveServer]:
    """uvicorn on a free loopback port, with a 100 kB upload cap."""
    folder = tmp_path_factory.mktemp("hostile-server")
    policy = folder / "hostile.toml"
    policy.write_text(SMALL_CAP_POLICY, encoding="utf-8")
    settings = hostile_settings(folder, consent_keys, policy=str(policy))
    for live in start_live_app(settings, consent_keys):
        # The TestClient above ran the schema migration and holds the lifespan; the real
        # server runs a second app on the same database and store, as a replica would.
        with BackgroundServer(create_app(settings)) as server:
            yield LiveServer(url=server.url, host=server.host, port=server.port, live=live)
