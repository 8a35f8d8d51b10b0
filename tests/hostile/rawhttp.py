"""A raw HTTP/1.1 client over a socket: for bodies no well-behaved client library would send."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    body_bytes_sent: int
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


def request_head(path: str, *, host: str, headers: dict[str, str], method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(pieces: Iterable[bytes]) -> Iterable[bytes]:
    """Transfer-Encoding: chunked framing, ending with the zero chunk."""
    for piece in pieces:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def _response_started(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def send_and_read(
    address: tuple[str, int],
    head: bytes,
    body: Iterable[bytes],
    *,
    pause_s: float = 0.0,
    timeout_s: float = 30.0,
) -> RawResponse:
    """Send ``head`` then the body pieces until the server answers (or closes); read the answer."""
    started = time.monotonic()
    sent = 0
    with socket.create_connection(address, timeout=timeout_s) as sock:
        sock.sendall(head)
        for piece in body:
            if _response_started(sock):
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
            if pause_s:
                time.sleep(pause_s)
        return _read_response(sock, sent, started)


def _read_response(sock: socket.socket, sent: int, started: float) -> RawResponse:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer after {sent} body bytes")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return RawResponse(
        status=int(status_line.split()[1]),
        headers=headers,
        body=rest[:length],
        body_bytes_sent=sent,
        seconds=time.monotonic() - started,
    )
