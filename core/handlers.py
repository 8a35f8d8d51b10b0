"""One place that turns every error into RFC 9457 problem+json."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import ChorusError, DatabaseUnavailable, UnstorableInput, problem_body
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
    return JSONResponse(
        problem_body(status=status, code=code, title=title, detail=detail, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def _chorus_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChorusError)
    if exc.status >= 500:
        _logger.warning("service error", extra={"code": exc.code})
    return problem_response(
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
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


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    _logger.warning("database error", extra={"error": type(exc).__name__})
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return await _chorus_error(request, DatabaseUnavailable())
    if isinstance(exc, DataError):
        # A value the database refused (NUL, out of range, too long) that no model caught:
        # the request's fault, not the service's. The message may quote it: not sent.
        return await _chorus_error(
            request, UnstorableInput("a value in the request cannot be stored")
        )
    return await _unexpected_error(request, exc)


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    # The message may quote stored values, so only the type is logged.
    _logger.error("unhandled error", extra={"error": type(exc).__name__})
    return problem_response(
        status=500,
        code="internal_error",
        title="Internal error",
        detail="The service failed to handle this request.",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ChorusError, _chorus_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)
