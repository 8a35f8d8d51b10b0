"""Oversize, endless, slow and many-part uploads against a real server on loopback.

The server (uvicorn, as ``chorus serve`` runs it) has a 100 kB upload cap. Every refusal must
come early: after a bounded part of the body, as RFC 9457 problem+json, with the server still
answering other clients meanwhile and afterwards.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from core.auth import Role
from ingest import routes as ingest_routes
from ingest.multipart import MAX_METADATA_BYTES, body_limit
from tests.hostile.live import SMALL_CAP_BYTES, LiveServer
from tests.hostile.rawhttp import RawResponse, chunked, request_head, send_and_read

BOUNDARY = "chorus-hostile-boundary"
PROBLEM_JSON = "application/problem+json"
# Loopback socket buffers hold a few MB that the client can send before the server reads them.
SOCKET_SLACK_BYTES = 16 * 1024 * 1024


def _headers(live: LiveServer, **extra: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {live.live.token()}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        **extra,
    }


def _part(name: str, data: bytes = b"", *, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"


def _metadata_part() -> bytes:
    return _part("metadata", json.dumps({"exercise_id": "digit-7"}).encode())


def _endless_audio(piece_bytes: int = 64 * 1024) -> Iterator[bytes]:
    yield _metadata_part() + _part("audio", filename="clip.wav")[:-2]
    yield from itertools.repeat(b"\x00" * piece_bytes, 3000)  # 196 MB offered


def _assert_problem(response: RawResponse, status: int, code: str) -> None:
    assert response.status == status, response.body
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == code


def _assert_still_serving(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, timeout=5) as client:
        assert client.get("/healthz").status_code == 200
        releases = client.get("/v1/releases", headers=live.live.headers(Role.RESEARCHER))
        assert releases.status_code == 200


def test_declared_oversize_body_is_refused_before_it_is_sent(
    small_cap_server: LiveServer,
) -> None:
    head = request_head(
        "/v1/clips",
        host=small_cap_server.host,
        headers=_headers(small_cap_server, **{"Content-Length": str(10**9)}),
    )
    # Only the head and one small piece go out; the answer must not wait for the gigabyte.
    response = send_and_read(
        (small_cap_server.host, small_cap_server.port), head, [_metadata_part()], timeout_s=10
    )
    _assert_problem(response, 413, "payload_too_large")
    assert response.seconds < 5
    _assert_still_serving(small_cap_server)


def test_chunked_body_without_length_is_cut_off_at_the_cap(small_cap_server: LiveServer) -> None:
    head = request_head(
        "/v1/clips",
        host=small_cap_server.host,
        headers=_headers(small_cap_server, **{"Transfer-Encoding": "chunked"}),
    )
    response = send_and_read(
        (small_cap_server.host, small_cap_server.port), head, chunked(_endless_audio())
    )
    _assert_problem(response, 413, "payload_too_large")
    # The server read about the cap, not the 196 MB on offer.
    assert response.body_bytes_sent < body_limit(SMALL_CAP_BYTES) + SOCKET_SLACK_BYTES
    _assert_still_serving(small_cap_server)


def test_oversize_metadata_part_is_refused(small_cap_server: LiveServer) -> None:
    huge = b'{"exercise_id": "digit-7", "note": "' + b"x" * (MAX_METADATA_BYTES * 4) + b'"}'
    body = (
        _part("metadata", huge)
        + _part("audio", b"RIFF", filename="a.wav")
        + (f"--{BOUNDARY}--\r\n".encode())
    )
    head = request_head(
        "/v1/clips",
        host=small_cap_server.host,
        headers=_headers(small_cap_server, **{"Content-Length": str(len(body))}),
    )
    response = send_and_read((small_cap_server.host, small_cap_server.port), head, [body])
    _assert_problem(response, 413, "payload_too_large")


@pytest.mark.parametrize("depth", [64, 5_000])
def test_deeply_nested_metadata_is_refused_not_crashed_on(
    small_cap_server: LiveServer, depth: int
) -> None:
    nested = b'{"exercise_id": "digit-7", "x": ' + b"[" * depth + b"]" * depth + b"}"
    with httpx.Client(base_url=small_cap_server.url, timeout=10) as client:
        response = client.post(
            "/v1/clips",
            headers={"Authorization": f"Bearer {small_cap_server.live.token(f'deep-{depth}')}"},
            files=[
                ("metadata", (None, nested, "application/json")),
                ("audio", ("a.wav", b"not audio", "audio/wav")),
            ],
        )
    # Unknown fields are dropped unread, so a shallow one passes the allowlist and the junk
    # audio is refused; one nested past the parser's depth is invalid metadata, never a 500.
    assert response.status_code in (415, 422), response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    expected = "unsupported_audio" if depth == 64 else "invalid_metadata"
    assert response.json()["code"] == expected


@pytest.mark.parametrize("route", ["/v1/exercises/usage", "/v1/reports"])
def test_deeply_nested_json_bodies_are_refused(small_cap_server: LiveServer, route: str) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    role = Role.ADMIN if route.endswith("usage") else Role.APP
    method = "PUT" if route.endswith("usage") else "POST"
    with httpx.Client(base_url=small_cap_server.url, timeout=10) as client:
        response = client.request(
            method,
            route,
            content=body,
            headers={**small_cap_server.live.headers(role), "Content-Type": "application/json"},
        )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == PROBLEM_JSON


def test_thousands_of_parts_are_refused_after_a_few(small_cap_server: LiveServer) -> None:
    parts = (_part(f"p{n}", b"x") for n in range(200_000))
    head = request_head(
        "/v1/clips",
        host=small_cap_server.host,
        headers=_headers(small_cap_server, **{"Transfer-Encoding": "chunked"}),
    )
    pieces = (b"".join(itertools.islice(parts, 200)) for _ in range(1000))
    response = send_and_read((small_cap_server.host, small_cap_server.port), head, chunked(pieces))
    _assert_problem(response, 422, "invalid_input")
    assert "parts" in response.json()["detail"]
    _assert_still_serving(small_cap_server)


def test_many_parts_within_the_byte_cap_are_refused(small_cap_server: LiveServer) -> None:
    body = b"".join(_part("x", b"") for _ in range(1500)) + f"--{BOUNDARY}--\r\n".encode()
    assert len(body) < body_limit(SMALL_CAP_BYTES)
    head = request_head(
        "/v1/clips",
        host=small_cap_server.host,
        headers=_headers(small_cap_server, **{"Content-Length": str(len(body))}),
    )
    response = send_and_read((small_cap_server.host, small_cap_server.port), head, [body])
    _assert_problem(response, 422, "invalid_input")


def _trickle(first: bytes, stop: threading.Event) -> Iterator[bytes]:
    yield first
    while not stop.is_set():
        yield b"x"


@pytest.fixture
def short_upload_timeouts(monkeypatch: pytest.MonkeyPatch) -> tuple[float, float]:
    """Idle and total upload timeouts of 1 s and 3 s instead of 15 s and 120 s."""
    monkeypatch.setattr(ingest_routes, "UPLOAD_IDLE_TIMEOUT_S", 1.0)
    monkeypatch.setattr(ingest_routes, "UPLOAD_TOTAL_TIMEOUT_S", 3.0)
    return 1.0, 3.0


def test_stalled_upload_is_cut_off_after_the_idle_timeout(
    small_cap_server: LiveServer, short_upload_timeouts: tuple[float, float]
) -> None:
    idle_s, _total_s = short_upload_timeouts
    head = request_head(
        "/v1/clips",
        host=small_cap_server.host,
        headers=_headers(small_cap_server, **{"Content-Length": str(50_000)}),
    )
    # Half the metadata part, then silence.
    response = send_and_read(
        (small_cap_server.host, small_cap_server.port),
        head,
        [_metadata_part()[:20]],
        timeout_s=30,
    )
    _assert_problem(response, 408, "upload_timeout")
    assert idle_s <= response.seconds < idle_s + 5


def test_trickled_upload_is_cut_off_and_does_not_stall_other_clients(
    small_cap_server: LiveServer, short_upload_timeouts: tuple[float, float]
) -> None:
    """A client sending a byte every 0.1 s is never idle, so the total deadline stops it;
    meanwhile every other client is served at once."""
    _idle_s, total_s = short_upload_timeouts
    head = request_head(
        "/v1/clips",
        host=small_cap_server.host,
        headers=_headers(small_cap_server, **{"Content-Length": str(50_000)}),
    )
    stop = threading.Event()
    outcome: dict[str, RawResponse] = {}

    def slow_client() -> None:
        outcome["response"] = send_and_read(
            (small_cap_server.host, small_cap_server.port),
            head,
            _trickle(_metadata_part() + _part("audio", filename="a.wav")[:-2], stop),
            pause_s=0.1,
            timeout_s=30,
        )

    thread = threading.Thread(target=slow_client, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        for _ in range(10):
            _assert_still_serving(small_cap_server)
        assert time.monotonic() - started < total_s
        thread.join(timeout=total_s + 10)
    finally:
        stop.set()
        thread.join(timeout=10)
    response = outcome["response"]
    _assert_problem(response, 408, "upload_timeout")
    assert total_s <= response.seconds < total_s + 5
    assert response.body_bytes_sent < 500  # it really was trickling
