"""Every error reaches the client as RFC 9457 problem+json with a stable code."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from core import errors
from core.handlers import install_error_handlers


class _Body(BaseModel):
    count: int


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{name}")
    def raise_named(name: str) -> None:
        raise getattr(errors, name)("specific detail")

    @app.get("/disconnect")
    def disconnect() -> None:
        raise ClientDisconnect()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret-internal-state-xyz")

    @app.post("/typed")
    def typed(body: _Body) -> dict[str, int]:
        return {"count": body.count}

    return app


@pytest.fixture
def problem_client() -> TestClient:
    return TestClient(_app(), raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("AuthError", 401, "unauthorized"),
        ("ConsentInvalid", 401, "consent_invalid"),
        ("MinorRefused", 403, "minor"),
        ("NotFound", 404, "not_found"),
        ("ContributionLimit", 409, "contribution_limit"),
        ("PayloadTooLarge", 413, "payload_too_large"),
        ("UnsupportedAudio", 415, "unsupported_audio"),
        ("ExerciseNotEligible", 422, "exercise_not_eligible"),
        ("StorageUnavailable", 503, "storage_unavailable"),
        ("DuplicateHeader", 400, "duplicate_header"),
        ("IdempotencyKeyBusy", 409, "idempotency_key_busy"),
        ("IdempotencyKeyReused", 422, "idempotency_key_reused"),
        ("StorageFull", 507, "storage_full"),
    ],
)
def test_chorus_errors_render_as_problem_json(
    problem_client: TestClient, name: str, status: int, code: str
) -> None:
    response = problem_client.get(f"/raise/{name}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    # A service fault's detail names its inside: the client reads the class's public text.
    expected = "specific detail" if status < 500 else getattr(errors, name).public_detail
    assert body["detail"] == expected
    assert body["type"].endswith(f"/{code}")
    assert body["title"]


def test_unknown_exception_is_a_generic_500_without_internals(problem_client: TestClient) -> None:
    response = problem_client.get("/boom")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "secret-internal-state-xyz" not in response.text
    assert "Traceback" not in response.text


def test_validation_error_names_the_field_but_not_the_value(problem_client: TestClient) -> None:
    response = problem_client.post("/typed", json={"count": "not-a-number-marker"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_input"
    assert body["errors"][0]["loc"] == ["body", "count"]
    assert "not-a-number-marker" not in response.text


def test_unknown_route_and_method_are_problem_json(problem_client: TestClient) -> None:
    missing = problem_client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    wrong_method = problem_client.delete("/boom")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"


def test_every_error_class_has_a_unique_code_per_status() -> None:
    seen: dict[tuple[int, str], str] = {}
    for name in dir(errors):
        cls = getattr(errors, name)
        if (
            isinstance(cls, type)
            and issubclass(cls, errors.ChorusError)
            and cls.__name__ not in {"BlobNotFound", "DatabaseBusy"}  # refinements, for us
        ):
            key = (cls.status, cls.code)
            assert key not in seen, f"{name} repeats the code of {seen.get(key)}"
            seen[key] = name


@pytest.mark.parametrize(
    "name", ["Unavailable", "StorageUnavailable", "DatabaseUnavailable", "DecoderUnavailable"]
)
def test_every_503_says_when_to_retry(problem_client: TestClient, name: str) -> None:
    response = problem_client.get(f"/raise/{name}")
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0


def test_other_errors_carry_no_retry_after(problem_client: TestClient) -> None:
    for name in ("ContributionLimit", "AuthError", "InvalidInput"):
        assert "retry-after" not in problem_client.get(f"/raise/{name}").headers
    assert problem_client.get("/raise/AuthError").headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("name", ["StorageFull", "IdempotencyKeyBusy"])
def test_a_full_store_and_a_busy_key_say_when_to_retry(
    problem_client: TestClient, name: str
) -> None:
    assert int(problem_client.get(f"/raise/{name}").headers["retry-after"]) > 0


def test_a_client_gone_away_is_499_logged_once_at_info(
    problem_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="chorus.errors"):
        response = problem_client.get("/disconnect")
    assert response.status_code == 499
    assert response.json()["code"] == "client_closed_request"
    records = [r for r in caplog.records if r.name == "chorus.errors"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, "client closed the request")
    ]
