"""Schemathesis against the OpenAPI schema of every route, with a valid key for each route.

Each operation is exercised with its own role's key (or a valid consent token for the upload
and withdrawal), so generated data reaches validation and the handlers rather than stopping at
401. Checks: no 5xx, documented status codes and content types, bodies matching the schema.
Examples per operation: ``CHORUS_SCHEMA_EXAMPLES`` (default 15).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.dependencies.models import Dependant
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from core.auth import Role
from tests.hostile.conftest import LiveApp

MAX_EXAMPLES = int(os.environ.get("CHORUS_SCHEMA_EXAMPLES", "15"))
CONSENT_ROUTES = {("POST", "/v1/clips"), ("POST", "/v1/consent/withdrawals")}
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


def credentials_by_route(live: LiveApp) -> dict[tuple[str, str], dict[str, str]]:
    """Headers that authorize each operation: its role's key or a consent token."""
    headers: dict[tuple[str, str], dict[str, str]] = {}
    for route in live.app.routes:
        if not isinstance(route, APIRoute):
            continue
        for method in route.methods:
            key = (method, route.path)
            if key in CONSENT_ROUTES:
                headers[key] = {"Authorization": f"Bearer {live.token()}"}
            else:
                roles = _required_roles(route.dependant)
                headers[key] = live.headers(roles[0]) if roles else {}
    return headers


@pytest.fixture(scope="module")
def api_schema(live_app: LiveApp) -> Any:
    app: FastAPI = live_app.app
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def route_headers(live_app: LiveApp) -> dict[tuple[str, str], dict[str, str]]:
    return credentials_by_route(live_app)


schema = schemathesis.pytest.from_fixture("api_schema")


def test_every_operation_is_authorized_with_a_real_credential(
    route_headers: dict[tuple[str, str], dict[str, str]],
) -> None:
    # Guards the mapping above: an operation without credentials would only ever see 401.
    missing = [
        key for key, headers in route_headers.items()
        if not headers and not key[1].startswith(("/healthz", "/readyz", "/review", "/docs",
                                                   "/openapi", "/redoc", "/metrics"))
    ]
    assert not missing


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_responses_match_schema(
    case: Any, route_headers: dict[tuple[str, str], dict[str, str]]
) -> None:
    headers: Callable[[], dict[str, str]] = lambda: route_headers.get(
        (case.operation.method.upper(), case.operation.path), {}
    )
    case.call_and_validate(headers=headers(), checks=CHECKS)
