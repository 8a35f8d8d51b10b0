"""Schemathesis against the OpenAPI schema of every route, with a valid key for each route.

Each operation is exercised with the key of every role it admits in turn (or a valid consent
token for the upload and withdrawal), so generated data reaches validation and the handlers
rather than stopping at 401. Checks: no 5xx, documented status codes and content types, bodies
matching the schema. The run is on SQLite and, when ``CHORUS_TEST_DATABASE_URL`` names a
server (as in CI), on PostgreSQL too, whose text and integer rules are stricter.
Examples per operation: ``CHORUS_SCHEMA_EXAMPLES`` (default 15).
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import BaseRoute

from chorus.app import create_app
from chorus.demo import BackgroundServer
from chorus.devservers import provision_postgres_database
from core.auth import Role
from core.settings import Settings
from tests.consent import ConsentKeys
from tests.hostile.live import LiveApp, LiveServer, hostile_settings, start_live_app

MAX_EXAMPLES = int(os.environ.get("CHORUS_SCHEMA_EXAMPLES", "15"))
CONSENT_ROUTES = {("POST", "/v1/clips"), ("POST", "/v1/consent/withdrawals")}
PUBLIC_PATHS = {"/healthz", "/readyz", "/review", "/v1/clips/requirements"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _required_roles(dependant: Dependant) -> list[Role]:
    """The roles a route's ``require_<role>[_or_<role>]`` dependency admits."""
    for dependency in dependant.dependencies:
        name = getattr(dependency.call, "__name__", "")
        if name.startswith("require_"):
            return [Role(part) for part in name.removeprefix("require_").split("_or_")]
        found = _required_roles(dependency)
        if found:
            return found
    return []


def _api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # routers included lazily
        if included is not None:
            yield from _api_routes(included.routes)


def credentials_by_route(live: LiveApp) -> dict[tuple[str, str], list[dict[str, str]]]:
    """Headers that authorize each operation: the key of each role it admits, or a consent
    token."""
    headers: dict[tuple[str, str], list[dict[str, str]]] = {}
    for route in _api_routes(live.app.routes):
        # The published path drops a parameter's convertor: {name:path} is {name}.
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        assert route.methods is not None  # an APIRoute always has its methods
        for method in route.methods:
            key = (method, path)
            if key in CONSENT_ROUTES:
                headers[key] = [{"Authorization": f"Bearer {live.token()}"}]
            else:
                headers[key] = [live.headers(role) for role in _required_roles(route.dependant)]
    return headers


def _published_schema() -> dict[str, Any]:
    """The OpenAPI document as the service publishes it (no server needed to build it)."""
    folder = Path(tempfile.mkdtemp(prefix="chorus-openapi-"))
    app: FastAPI = create_app(
        Settings(
            database_url=f"sqlite:///{folder / 'chorus.db'}",
            storage_url=f"file://{folder / 'blobs'}",
            policy="demo",
        )
    )
    return app.openapi()


DATABASES = ["sqlite"] + (
    [pytest.param("postgres", marks=pytest.mark.postgres)]
    if os.environ.get("CHORUS_TEST_DATABASE_URL", "").strip()
    else []
)


@pytest.fixture(scope="module", params=DATABASES)
def schema_app(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    consent_keys: ConsentKeys,
) -> Iterator[LiveApp]:
    """The app with a key per role, on SQLite or on a fresh PostgreSQL database."""
    folder = tmp_path_factory.mktemp(f"schema-{request.param}")
    if request.param == "sqlite":
        yield from start_live_app(hostile_settings(folder, consent_keys), consent_keys)
        return
    with provision_postgres_database(prefix="chorus_schema") as url:
        yield from start_live_app(
            hostile_settings(folder, consent_keys, database_url=url), consent_keys
        )


@pytest.fixture(scope="module")
def live_server(schema_app: LiveApp) -> Iterator[LiveServer]:
    """The same app under uvicorn on loopback: one lifespan, real HTTP for every case."""
    with BackgroundServer(schema_app.app) as server:
        yield LiveServer(url=server.url, host=server.host, port=server.port, live=schema_app)


@pytest.fixture(scope="module")
def route_headers(schema_app: LiveApp) -> dict[tuple[str, str], list[dict[str, str]]]:
    return credentials_by_route(schema_app)


@pytest.fixture(scope="module")
def headers_for(
    route_headers: dict[tuple[str, str], list[dict[str, str]]],
) -> Callable[[str, str], dict[str, str]]:
    """The next credential of an operation: its admitted roles' keys in turn."""
    turns = {key: itertools.cycle(choices) for key, choices in route_headers.items() if choices}

    def pick(method: str, path: str) -> dict[str, str]:
        turn = turns.get((method.upper(), path))
        return dict(next(turn)) if turn is not None else {}

    return pick


# Built at import: schemathesis's fixture-backed loader does not run under this pytest.
PUBLISHED = _published_schema()
schema = schemathesis.openapi.from_dict(PUBLISHED)


def test_every_operation_is_authorized_with_a_real_credential(
    route_headers: dict[tuple[str, str], list[dict[str, str]]],
) -> None:
    # Guards the mapping: an operation without credentials would only ever see 401.
    operations = [
        (method.upper(), path)
        for path, item in PUBLISHED["paths"].items()
        for method in item
        if path not in PUBLIC_PATHS
    ]
    assert len(operations) >= 15
    assert [op for op in operations if not route_headers.get(op)] == []
    # Operations that admit several roles are tried with each one's key.
    assert len(route_headers[("GET", "/v1/courses")]) == 2


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_responses_match_schema(
    case: Any, live_server: LiveServer, headers_for: Callable[[str, str], dict[str, str]]
) -> None:
    headers = headers_for(case.operation.method, case.operation.path)
    case.call_and_validate(base_url=live_server.url, headers=headers, checks=CHECKS)
