"""One place that turns every error into RFC 9457 problem+json, and that documents, per
route, which problem codes it may answer."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from core.db_errors import database_error
from core.errors import (
    RETRY_AFTER_S,
    AuthError,
    ChorusError,
    ClientClosedRequest,
    ConsentInvalid,
    ConsentScopeInvalid,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    StorageUnavailable,
    UnstorableInput,
    problem_body,
)
from core.text import UNSTORABLE_ERROR_TYPES

PROBLEM_JSON = "application/problem+json"
# Declared on every operation (see create_app), so the published schema names what errors look like.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "stable machine-readable error code"},
        "instance": {"type": "string"},
    },
}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
    }
    for status, description in (
        ("4XX", "the request was refused (RFC 9457 problem document)"),
        ("5XX", "the service or a dependency failed (RFC 9457 problem document)"),
    )
}
# What a route's security scheme (by OpenAPI name) adds to the problems it may answer.
SCHEME_PROBLEMS: dict[str, tuple[type[ChorusError], ...]] = {
    "RoleKey": (AuthError, Forbidden),
    "ConsentToken": (ConsentInvalid, ConsentScopeInvalid),
}
_logger = logging.getLogger("chorus.errors")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def problem_response(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    retry_after_s: int | None = None,
    **extra: Any,
) -> JSONResponse:
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    elif status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return JSONResponse(
        problem_body(status=status, code=code, title=title, detail=detail, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers or None,
    )


async def _chorus_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChorusError)
    if exc.status >= 500:
        # The detail names what failed inside (host, port, bucket, path): the log keeps it.
        _logger.warning("service error", extra={"code": exc.code, "detail": exc.detail})
    elif exc.status == ClientClosedRequest.status:
        # The client's network, not the service: one line, below any alert (counted as 499).
        _logger.info("client closed the request", extra={"code": exc.code})
    return problem_response(
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.client_detail,
        retry_after_s=exc.retry_after_s,
        **exc.extra,
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only where and what, never the offending value: it may be learner data.
    errors = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    # Text no database can store has a code of its own (core.text), whatever else is wrong.
    unstorable = any(e["type"] in UNSTORABLE_ERROR_TYPES for e in errors)
    return problem_response(
        status=422,
        code=UnstorableInput.code if unstorable else "invalid_input",
        title=UnstorableInput.title if unstorable else "Invalid input",
        detail="; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5]),
        errors=errors,
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return problem_response(
        status=exc.status_code,
        code=code,
        title=code.replace("_", " ").capitalize(),
        detail=str(exc.detail),
    )


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClientDisconnect)
    return await _chorus_error(request, ClientClosedRequest())


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A database error that no transaction's edge translated (``core.db_errors``'s table);
    the message may quote a stored value: only the type is logged, nothing of it is sent."""
    _logger.warning("database error", extra={"error": type(exc).__name__})
    error = database_error(exc)
    if error is None:
        return await _unexpected_error(request, exc)
    return await _chorus_error(request, error)


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    # The message may quote stored values, so only the type is logged.
    _logger.error("unhandled error", extra={"error": type(exc).__name__})
    return problem_response(
        status=500,
        code="internal_error",
        title="Internal error",
        detail="The service failed to handle this request.",
    )


def problem_responses(
    *errors: type[ChorusError], into: dict[int | str, Any] | None = None
) -> dict[int | str, Any]:
    """OpenAPI ``responses`` naming each error's status and stable code, with an example each.

    Merged into ``into`` (a route's own ``responses``) when given: codes of one status join.
    """
    responses: dict[int | str, Any] = into if into is not None else {}
    for error in errors:
        entry = responses.setdefault(str(error.status), {"description": ""})
        content = entry.setdefault("content", {}).setdefault(PROBLEM_JSON, {})
        examples = content.setdefault("examples", {})
        if error.code in examples:
            continue
        examples[error.code] = {
            "summary": error.title,
            "value": problem_body(
                status=error.status, code=error.code, title=error.title, detail=error.title
            ),
        }
        codes = list(examples)
        content["schema"] = {
            **PROBLEM_SCHEMA,
            "properties": {
                **PROBLEM_SCHEMA["properties"],
                "code": {"type": "string", "enum": codes, "description": "stable error code"},
            },
        }
        entry["description"] = "; ".join(
            f"`{code}`: {example['summary']}" for code, example in examples.items()
        )
    return responses


def document_problems(app: FastAPI) -> None:
    """Add to every operation of ``app``'s OpenAPI document the problems it shares with others.

    Routes name their own domain errors (``responses=problem_responses(...)``); this adds what
    follows from the operation itself: 401/403 for a role key, 401/403 for a consent token,
    422 ``invalid_input`` and ``unstorable_input`` (our problem document, in place of FastAPI's
    own validation schema) where there are parameters or a body, and 503
    ``database_unavailable`` and ``storage_unavailable`` behind credentials.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for operations in generate()["paths"].values():
                for operation in operations.values():
                    _add_shared_problems(operation)
                    _name_roles(operation)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _name_roles(operation: dict[str, Any]) -> None:
    """Say in the description which roles' keys the operation admits (the security
    requirement lists them too, as OpenAPI 3.1 allows for any scheme)."""
    roles = sorted(
        {
            role
            for requirement in operation.get("security", ())
            for role in requirement.get("RoleKey", ())
        }
    )
    if not roles:
        return
    line = f"**Roles:** {', '.join(roles)} (a role key in `X-API-Key`)."
    description = operation.get("description")
    operation["description"] = f"{description}\n\n{line}" if description else line


def _add_shared_problems(operation: dict[str, Any]) -> None:
    errors: list[type[ChorusError]] = [
        error
        for requirement in operation.get("security", ())
        for name in requirement
        for error in SCHEME_PROBLEMS.get(name, ())
    ]
    responses = operation.setdefault("responses", {})
    if operation.get("parameters") or operation.get("requestBody"):
        if PROBLEM_JSON not in responses.get("422", {}).get("content", {}):
            responses.pop("422", None)  # FastAPI's own schema; ours answers problem+json
        # Any text may hold what no database stores (core.text): refused as unstorable_input.
        errors += (InvalidInput, UnstorableInput)
    if errors:
        errors += (DatabaseUnavailable, StorageUnavailable)
    problem_responses(*errors, into=responses)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ChorusError, _chorus_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected_error)
