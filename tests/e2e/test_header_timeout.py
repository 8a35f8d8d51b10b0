"""``chorus serve`` closes a connection whose request headers are not complete within
``CHORUS_HEADER_TIMEOUT_S``, however slowly the bytes trickle in, while other clients are
served; a request whose headers arrive in time is served as usual."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.consent import ConsentKeys
from tests.e2e.procs import LOOPBACK, ChorusProcess

pytestmark = pytest.mark.e2e
TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, consent_keys: ConsentKeys
) -> Iterator[ChorusProcess]:
    folder = tmp_path_factory.mktemp("header-timeout")
    env = {
        "CHORUS_DATABASE_URL": f"sqlite:///{folder / 'chorus.db'}",
        "CHORUS_STORAGE_URL": f"file://{folder / 'blobs'}",
        "CHORUS_POLICY": "demo",
        "CHORUS_CONSENT_PUBLIC_KEY": consent_keys.public_pem,
        "CHORUS_SCHEDULER_ENABLED": "false",
        "CHORUS_DECODER_WORKERS": "1",
        "CHORUS_MODEL_DIR": str(folder / "models"),
        "CHORUS_HEADER_TIMEOUT_S": str(TIMEOUT_S),
    }
    with ChorusProcess(env, folder / "serve.log") as process:
        yield process


def _connect(server: ChorusProcess) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, server.port), timeout=10)
    sock.settimeout(0.1)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed its side: EOF or a reset."""
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _send_slowly(sock: socket.socket, data: bytes, *, for_s: float) -> float:
    """Send one byte of ``data`` every 0.1 s until the server closes or ``for_s`` passes;
    returns when the server closed (seconds after the start), or raises."""
    started = time.monotonic()
    for byte in data * 100:
        if _closed_by_server(sock):
            return time.monotonic() - started
        if time.monotonic() - started > for_s:
            break
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
    raise AssertionError(f"the connection was still open after {for_s} s")


def test_trickled_headers_are_cut_off_and_others_are_served(server: ChorusProcess) -> None:
    silent = _connect(server)
    slow = [_connect(server) for _ in range(5)]
    head = b"GET /healthz HTTP/1.1\r\nHost: chorus\r\nX-Slow: " + b"a" * 200
    with silent:
        started = time.monotonic()
        closed_after = [_send_slowly(sock, head, for_s=TIMEOUT_S * 4) for sock in slow[:1]]
        # Meanwhile the others trickled nothing more; a normal client is served at once.
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert TIMEOUT_S * 0.8 <= closed_after[0] <= TIMEOUT_S + 1.5
        deadline = started + TIMEOUT_S + 1.5
        while time.monotonic() < deadline and not all(_closed_by_server(s) for s in slow[1:]):
            time.sleep(0.1)
        assert all(_closed_by_server(s) for s in [silent, *slow[1:]])
    for sock in slow:
        sock.close()


def test_headers_sent_in_time_are_served_and_a_keep_alive_request_is_bounded_too(
    server: ChorusProcess,
) -> None:
    with _connect(server) as sock:
        sock.settimeout(5)
        request = b"GET /healthz HTTP/1.1\r\nHost: chorus\r\n\r\n"
        for index in range(0, len(request), 8):  # in pieces, well within the bound
            sock.send(request[index : index + 8])
            time.sleep(TIMEOUT_S / 20)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        # The next request on the same connection must complete its headers in time as well.
        sock.settimeout(0.1)
        closed_after = _send_slowly(sock, request[:-2] + b"X: " + b"b" * 100, for_s=TIMEOUT_S * 4)
        assert closed_after <= TIMEOUT_S + 1.5
