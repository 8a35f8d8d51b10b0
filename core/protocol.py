"""The HTTP/1.1 protocol ``chorus serve`` runs: uvicorn's h11 protocol with a header timeout.

uvicorn closes a connection that stays idle after a response (``timeout_keep_alive``), but it
has no bound on how long a client may take to send a request's headers: a connection that
sends nothing, or a few header bytes now and then (slowloris), is held for ever, with its
socket and buffers. Here a connection waiting for a request's headers is closed once
``CHORUS_HEADER_TIMEOUT_S`` has passed since it opened or since the first byte of that request,
however the bytes trickle in. The body has its own limits (``ingest.routes``), and header size
is bounded by h11 (``h11_max_incomplete_event_size``, 16 KiB).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from core.settings import get_settings

# What ``uvicorn.run(http=…)`` takes: an import string, so ``--workers N`` can pass it on.
PROTOCOL = "core.protocol:HeaderTimeoutProtocol"


class HeaderTimeoutProtocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = get_settings().header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # a new request begins (no-op while one is armed)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()  # its headers are complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
