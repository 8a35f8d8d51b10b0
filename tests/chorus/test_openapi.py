"""The published OpenAPI document: security schemes and the problem codes of every route."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core import errors
from tests.test_authorization_matrix import ACCESS, CONSENT, PUBLIC, normalized

ERROR_CODES = {
    (cls.status, cls.code)
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.ChorusError)
}
UPLOAD_CODES = {
    "401": {"consent_invalid"},
    "403": {"consent_scope", "minor"},
    "408": {"upload_timeout"},
    "409": {"contribution_limit", "duplicate_recording", "idempotency_key_busy"},
    "413": {"payload_too_large"},
    "415": {"unsupported_audio"},
    "422": {
        "invalid_input",
        "unstorable_input",
        "invalid_metadata",
        "exercise_not_eligible",
        "invalid_audio",
        "no_speech",
        "idempotency_key_reused",
    },
    "507": {"storage_full"},
    "503": {"unavailable", "decoder_unavailable", "database_unavailable", "storage_unavailable"},
}


@pytest.fixture
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _codes(operation: dict[str, Any], status: str) -> set[str]:
    content = operation["responses"][status]["content"]["application/problem+json"]
    return set(content["schema"]["properties"]["code"]["enum"])


def test_security_schemes_name_the_consent_token_and_the_role_key(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["ConsentToken"]["type"] == "http"
    assert schemes["ConsentToken"]["scheme"] == "bearer"
    assert schemes["ConsentToken"]["bearerFormat"] == "JWT"
    assert schemes["RoleKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["RoleKey"]["description"],
    }


def test_every_operation_declares_the_credential_its_route_checks(
    document: dict[str, Any],
) -> None:
    for method, path, operation in _operations(document):
        access = ACCESS[(method, normalized(path))]
        names = {name for requirement in operation.get("security", ()) for name in requirement}
        scheme = "ConsentToken" if access == CONSENT else "RoleKey"
        expected = set() if access == PUBLIC else {scheme}
        assert names == expected, (method, path)


def test_every_credentialed_operation_documents_401_and_403(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        if not operation.get("security"):
            continue
        assert _codes(operation, "401"), (method, path)
        assert _codes(operation, "403"), (method, path)
        assert "database_unavailable" in _codes(operation, "503"), (method, path)


def test_documented_problem_codes_are_real_and_under_their_status(
    document: dict[str, Any],
) -> None:
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            problem = response.get("content", {}).get("application/problem+json")
            if problem is None or not status.isdigit():
                continue
            for code, example in problem["examples"].items():
                assert (int(status), code) in ERROR_CODES, (method, path, status, code)
                assert example["value"]["code"] == code
                assert example["value"]["status"] == int(status)
            assert set(problem["examples"]) == set(problem["schema"]["properties"]["code"]["enum"])


def test_upload_documents_every_answer_it_gives(document: dict[str, Any]) -> None:
    upload = document["paths"]["/v1/clips"]["post"]
    for status, codes in UPLOAD_CODES.items():
        assert _codes(upload, status) == codes, status
    assert "HTTPValidationError" not in str(upload["responses"])


def test_release_routes_document_not_found(document: dict[str, Any]) -> None:
    for path in (
        "/v1/releases/{release_id}",
        "/v1/releases/{release_id}/clips/{clip_id}",
        "/v1/releases/{release_id}/archive",
        "/v1/aggregates/{exercise_id}",
    ):
        assert _codes(document["paths"][path]["get"], "404") == {"not_found"}, path


def test_declared_schemes_leave_the_answers_our_own(client: TestClient) -> None:
    # The schemes only describe: a missing credential is still our problem document.
    missing_key = client.get("/v1/releases")
    assert missing_key.status_code == 401
    assert missing_key.json()["code"] == "unauthorized"
    wrong_scheme = client.post("/v1/consent/withdrawals", headers={"Authorization": "Basic eA=="})
    assert wrong_scheme.status_code == 401
    assert wrong_scheme.json()["code"] == "consent_invalid"
