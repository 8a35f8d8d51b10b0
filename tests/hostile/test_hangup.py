"""A client that hangs up mid-upload is the client's network, not a service failure: one INFO
line, counted as 499, never as a 5xx that would page someone; nothing is stored."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest

from core.auth import Role
from tests.hostile.live import LiveServer
from tests.hostile.rawhttp import request_head


def _requests_by_status(server: LiveServer) -> dict[str, float]:
    metrics = httpx.get(
        f"{server.url}/metrics", headers=server.live.headers(Role.AUDITOR), timeout=30
    )
    assert metrics.status_code == 200
    counts: dict[str, float] = {}
    for line in metrics.text.splitlines():
        if line.startswith("chorus_http_requests_total{") and 'route="/v1/clips"' in line:
            status = line.split('status="')[1].split('"')[0]
            counts[status] = counts.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_a_hang_up_mid_upload_is_499_logged_once_at_info(
    small_cap_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    boundary = "hangup-boundary"
    head = request_head(
        "/v1/clips",
        host=f"{small_cap_server.host}:{small_cap_server.port}",
        headers={
            "Authorization": f"Bearer {small_cap_server.live.token()}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": "90000",
        },
    )
    disposition = f"--{boundary}\r\nContent-Disposition: form-data; "
    part = (
        (
            f'{disposition}name="metadata"\r\n\r\n{{"exercise_id": "digit-7"}}\r\n'
            f'{disposition}name="audio"; filename="a.wav"\r\n\r\n'
        ).encode()
        + b"RIFF"
        + bytes(20_000)
    )
    before = _requests_by_status(small_cap_server)
    with caplog.at_level(logging.INFO):
        with socket.create_connection((small_cap_server.host, small_cap_server.port)) as sock:
            sock.sendall(head + part)
            time.sleep(0.3)
        # The connection is gone with 70 kB of the body unsent.
        deadline = time.monotonic() + 30
        while _requests_by_status(small_cap_server).get("499", 0) <= before.get("499", 0):
            assert time.monotonic() < deadline, "the hang-up was never counted"
            time.sleep(0.2)
    after = _requests_by_status(small_cap_server)
    assert after.get("499", 0) == before.get("499", 0) + 1
    assert {s for s in after if s.startswith("5")} == {s for s in before if s.startswith("5")}
    hang_ups = [r for r in caplog.records if r.getMessage() == "client closed the request"]
    assert [r.levelno for r in hang_ups] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert list(small_cap_server.live.app.state.store.list("pending/")) == []
