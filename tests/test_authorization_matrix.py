"""P11: every mounted route × every role (and no key) gets the documented answer.

The table below is ARCHITECTURE §6. A route without a role key answers 401; a key of a role the
route does not admit answers 403; a key of an admitted role gets past authorization (neither
401 nor 403, and no server error). Consent-token routes answer 401 to role keys, which are not
consent. A route mounted but missing from the table fails the test, so nothing new ships
without a documented answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import fastapi.routing
import httpx2
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Mount

from core.auth import Role

PUBLIC = "public"
CONSENT = "consent token"
R = Role

ACCESS: dict[tuple[str, str], str | frozenset[Role]] = {
    # ingest
    ("POST", "/v1/clips"): CONSENT,
    ("GET", "/v1/clips/requirements"): PUBLIC,
    ("POST", "/v1/consent/withdrawals"): CONSENT,
    ("PUT", "/v1/exercises/usage"): frozenset({R.ADMIN}),
    ("PATCH", "/v1/exercises/usage"): frozenset({R.ADMIN}),
    # releases and aggregates
    ("GET", "/v1/releases"): frozenset({R.RESEARCHER}),
    ("GET", "/v1/releases/{}"): frozenset({R.RESEARCHER}),
    ("GET", "/v1/releases/{}/clips/{}"): frozenset({R.RESEARCHER}),
    ("GET", "/v1/releases/{}/archive"): frozenset({R.RESEARCHER}),
    ("GET", "/v1/releases/{}/files/{}"): frozenset({R.RESEARCHER}),
    ("GET", "/v1/aggregates/{}"): frozenset({R.RESEARCHER}),
    # audit
    ("GET", "/v1/audit/policy"): frozenset({R.AUDITOR}),
    ("GET", "/v1/audit/releases"): frozenset({R.AUDITOR}),
    ("GET", "/v1/audit/log"): frozenset({R.AUDITOR}),
    ("GET", "/v1/audit/verify"): frozenset({R.AUDITOR}),
    # translation reports
    ("PUT", "/v1/courses/{}/prompts"): frozenset({R.ADMIN}),
    ("GET", "/v1/courses"): frozenset({R.CONTRIBUTOR, R.ADMIN}),
    ("POST", "/v1/reports"): frozenset({R.APP}),
    ("GET", "/v1/reports/queue"): frozenset({R.CONTRIBUTOR}),
    ("POST", "/v1/reports/{}/decision"): frozenset({R.CONTRIBUTOR}),
    ("GET", "/v1/reports/outbox"): frozenset({R.ADMIN}),
    ("POST", "/v1/reports/outbox/{}/ack"): frozenset({R.ADMIN}),
    # the review console shell carries no data; its page calls the API with a contributor key
    ("GET", "/review"): PUBLIC,
    ("GET", "/review/static/{}"): PUBLIC,
    # operations and API description; the home page only links the others
    ("GET", "/"): PUBLIC,
    ("GET", "/favicon.ico"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): frozenset({R.ADMIN, R.AUDITOR}),
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("MOUNT", "/docs-assets"): PUBLIC,
}

_PARAM = re.compile(r"\{[^}]+\}")
DUMMY_ID = "0123456789abcdef0123456789abcdef"


def normalized(path: str) -> str:
    return _PARAM.sub("{}", path)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, normalized(self.path))

    @property
    def url(self) -> str:
        return _PARAM.sub(DUMMY_ID, self.path)


def _flat_routes(app: FastAPI) -> list[tuple[BaseRoute, str | None, set[str] | None]]:
    """Every route with its full path, looking inside included routers."""
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_route_contexts is None:  # FastAPI before routers were included lazily
        return [(r, getattr(r, "path", None), getattr(r, "methods", None)) for r in app.routes]
    return [
        (context.original_route, context.path, context.methods)
        for context in iter_route_contexts(app.routes)
    ]


def mounted_endpoints(app: FastAPI) -> list[Endpoint]:
    endpoints: list[Endpoint] = []
    for route, path, methods in _flat_routes(app):
        if isinstance(route, Mount):
            endpoints.append(Endpoint("MOUNT", path or route.path))
        elif path is not None:
            endpoints.extend(
                Endpoint(method, path) for method in sorted(methods or ()) if method != "HEAD"
            )
    return endpoints


def _call(client: TestClient, endpoint: Endpoint, headers: dict[str, str]) -> httpx2.Response:
    body: dict[str, object] | None = {} if endpoint.method in {"POST", "PUT", "PATCH"} else None
    return client.request(endpoint.method, endpoint.url, headers=headers, json=body)


def test_every_mounted_route_is_in_the_table(app: FastAPI) -> None:
    unlisted = [e.key for e in mounted_endpoints(app) if e.key not in ACCESS]
    assert unlisted == [], f"routes without a documented answer: {unlisted}"


def test_every_documented_route_is_mounted(app: FastAPI) -> None:
    mounted = {e.key for e in mounted_endpoints(app)}
    assert sorted(set(ACCESS) - mounted) == []


def test_every_route_answers_every_role_as_documented(
    client: TestClient,
    app: FastAPI,
    auth: Callable[[Role], dict[str, str]],
) -> None:
    wrong: list[str] = []
    checked = 0
    for endpoint in mounted_endpoints(app):
        access = ACCESS.get(endpoint.key)
        if access is None or endpoint.method == "MOUNT":
            continue  # reported by the test above
        callers: list[tuple[str, dict[str, str], Role | None]] = [("no key", {}, None)]
        callers += [(role.value, auth(role), role) for role in Role]
        for caller, headers, role in callers:
            status = _call(client, endpoint, headers).status_code
            checked += 1
            if access == PUBLIC:
                expected_ok = status not in (401, 403)
                expectation = "no 401/403"
            elif access == CONSENT:
                expected_ok = status == 401
                expectation = "401 (a role key is not consent)"
            elif role is None:
                expected_ok = status == 401
                expectation = "401"
            elif role in access:
                expected_ok = status not in (401, 403) and status < 500
                expectation = "past authorization, no server error"
            else:
                expected_ok = status == 403
                expectation = "403"
            if not expected_ok:
                wrong.append(
                    f"{endpoint.method} {endpoint.path} as {caller}: {status}, "
                    f"expected {expectation}"
                )
    assert wrong == [], "\n".join(wrong)
    routes = [key for key in ACCESS if key[0] != "MOUNT"]
    assert checked == len(routes) * (1 + len(Role))


def test_an_unknown_or_revoked_key_is_401(
    client: TestClient, app: FastAPI, role_keys: dict[Role, str]
) -> None:
    from core.auth import revoke_key
    from core.tables import ApiKey

    assert client.get("/v1/audit/policy", headers={"X-API-Key": "chk_forged"}).status_code == 401
    with app.state.database.session() as session:
        key_id = session.query(ApiKey.id).filter(ApiKey.role == Role.AUDITOR.value).scalar()
        assert revoke_key(session, key_id=key_id)
    revoked = client.get("/v1/audit/policy", headers={"X-API-Key": role_keys[Role.AUDITOR]})
    assert revoked.status_code == 401
    assert revoked.headers["content-type"].startswith("application/problem+json")


def test_openapi_names_the_roles_of_every_operation(app: FastAPI) -> None:
    """Each operation's entry says who may call it: the roles of its key, or the consent token."""
    wrong: list[str] = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            access = ACCESS[(method.upper(), normalized(path))]
            security = operation.get("security", [])
            if isinstance(access, frozenset):
                named = {role for entry in security for role in entry.get("RoleKey", [])}
                if named != {role.value for role in access}:
                    wrong.append(f"{method.upper()} {path}: names {sorted(named)}")
                if not all(role.value in operation["description"] for role in access):
                    wrong.append(f"{method.upper()} {path}: roles not in its description")
            elif access == CONSENT:
                if security != [{"ConsentToken": []}]:
                    wrong.append(f"{method.upper()} {path}: {security}")
            elif security:
                wrong.append(f"{method.upper()} {path}: public, yet {security}")
    assert wrong == []
