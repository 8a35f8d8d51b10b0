"""JSON bodies beyond the cap are refused with 413 problem+json, declared or streamed."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from core.handlers import install_error_handlers
from core.limits import BodyLimitMiddleware


def _app(seen: list[int]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=1000, exempt_paths=("/upload",))

    @app.post("/json")
    async def read_json(request: Request) -> dict[str, int]:
        body = await request.body()
        seen.append(len(body))
        return {"bytes": len(body)}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


def test_small_body_passes_and_declared_oversize_is_refused_unread() -> None:
    seen: list[int] = []
    client = TestClient(_app(seen))
    assert client.post("/json", content=b"x" * 1000).json() == {"bytes": 1000}
    refused = client.post("/json", content=b"x" * 1001)
    assert refused.status_code == 413
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "payload_too_large"
    assert seen == [1000], "the route must not have read the oversize body"


def test_chunked_oversize_body_is_cut_off() -> None:
    seen: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            yield b"y" * 100

    refused = TestClient(_app(seen)).post("/json", content=chunks())
    assert refused.status_code == 413
    assert refused.json()["code"] == "payload_too_large"
    assert seen == []


def test_exempt_paths_keep_their_own_limits() -> None:
    response = TestClient(_app([])).post("/upload", content=b"z" * 5000)
    assert response.json() == {"bytes": 5000}
