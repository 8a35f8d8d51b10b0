"""Logs never carry request bodies, query strings, headers or client addresses (P3, P4)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.logs import ACCESS_LOGGER, JsonFormatter, configure_logging

MARKER = "canary-7f3a9c"
CLIENT_LOGGERS = ("httpx", "httpcore")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged during the test, as the service's JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous_level)


def _add_echo_routes(app: FastAPI) -> None:
    @app.post("/test-only/echo")
    async def echo() -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/test-only/fail")
    async def fail() -> None:
        raise RuntimeError(f"failure mentioning {MARKER}")


def test_markers_in_headers_query_and_body_leave_no_trace(
    app: FastAPI, client: TestClient, json_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    _add_echo_routes(app)
    caplog.set_level(logging.DEBUG)
    headers = {
        "X-API-Key": MARKER,
        "Authorization": f"Bearer {MARKER}",
        "X-Learner": MARKER,
        "Cookie": f"session={MARKER}",
        "User-Agent": MARKER,
        "X-Forwarded-For": "203.0.113.9",
    }
    for path in ("/test-only/echo", "/test-only/fail", "/v1/clips", "/nowhere"):
        client.post(f"{path}?learner={MARKER}", headers=headers, content=f"body {MARKER}")
        client.post(path, headers=headers, files={"audio": (f"{MARKER}.wav", MARKER.encode())})
    # The test's own HTTP client logs the URLs it requests; only the service's logs count.
    service_records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    service_lines = [
        line for line in json_log.getvalue().splitlines() if '"logger": "httpx' not in line
    ]
    logged = "\n".join(service_lines) + "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in service_records
    )
    assert "request" in json_log.getvalue(), "the access log wrote nothing at all"
    assert MARKER not in logged
    assert "203.0.113.9" not in logged
    assert "testclient" not in logged


def test_upload_routes_leave_no_access_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    client.post("/v1/clips", content=b"x")
    client.post("/v1/consent/withdrawals", content=b"x")
    client.get("/healthz")
    routes = [getattr(r, "route", None) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert routes == ["/healthz"]


def test_configure_logging_silences_uvicorn_access_log() -> None:
    configure_logging("INFO")
    access = logging.getLogger("uvicorn.access")
    assert access.disabled
    assert not access.propagate
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)
