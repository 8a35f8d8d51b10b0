"""A dependency that fails answers a problem that names no host, port, bucket or path.

Each fault is real: an S3 store, a PostgreSQL server and an idempotency store on loopback ports
where nothing listens, a Redis key store stopped while the service runs, a file store whose
folder went away. The answer says which kind of dependency failed and when to retry; the log
keeps what the operator needs (where, and why).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chorus.app import create_app
from core.auth import Role, create_key
from core.db import Database
from core.idempotency import open_idempotency_store
from core.settings import Settings
from ingest.deps import get_database, get_storage_url
from tests.ingest.uploads import Mint, Upload

pytestmark = pytest.mark.usefixtures("catalog")
BUCKET = "chorus-inner-bucket"


@pytest.fixture
def dead_port() -> int:
    """A loopback port where nothing listens (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _assert_names_nothing_inside(
    response: httpx2.Response, status: int, code: str, *inside: str
) -> None:
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["code"] == code
    assert response.headers.get("retry-after", "").isdigit()
    for secret in (
        "127.0.0.1",
        "localhost",
        "http://",
        "s3://",
        "redis://",
        "postgresql",
        "sqlite",
        *inside,
    ):
        assert secret not in response.text, (secret, response.text)


def test_store_down(
    app: FastAPI,
    dead_port: int,
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = f"http://127.0.0.1:{dead_port}"
    url = f"s3://{BUCKET}?endpoint_url={endpoint}&region=us-east-1"
    app.dependency_overrides[get_storage_url] = lambda: url
    with caplog.at_level(logging.WARNING, logger="chorus.errors"):
        response = upload(mint(), wav_bytes)
    _assert_names_nothing_inside(response, 503, "storage_unavailable", BUCKET, str(dead_port))
    # The operator still learns where: the log line keeps the detail.
    assert any(str(dead_port) in str(getattr(r, "detail", "")) for r in caplog.records)


def test_database_down(
    app: FastAPI, dead_port: int, wav_bytes: bytes, upload: Upload, mint: Mint
) -> None:
    dead = Database(f"postgresql+psycopg://chorus@127.0.0.1:{dead_port}/chorus_inner")
    app.dependency_overrides[get_database] = lambda: dead
    try:
        response = upload(mint(), wav_bytes, {"exercise_id": "digit-3"})
    finally:
        dead.engine.dispose()
    _assert_names_nothing_inside(
        response, 503, "database_unavailable", str(dead_port), "chorus_inner"
    )


def _add_exercise(client: TestClient) -> None:
    app = client.app
    assert isinstance(app, FastAPI)
    with app.state.database.session() as session:
        admin = create_key(session, role=Role.ADMIN, name="faults")
    usage = [{"exercise_id": "digit-7", "learners": 500}]
    response = client.put("/v1/exercises/usage", json=usage, headers={"X-API-Key": admin})
    assert response.status_code == 200, response.text


def _post(client: TestClient, token: str, audio: bytes) -> httpx2.Response:
    return client.post(
        "/v1/clips",
        headers={"Authorization": f"Bearer {token}"},
        files=[
            ("metadata", (None, b'{"exercise_id": "digit-7"}', "application/json")),
            ("audio", ("clip.wav", audio, "audio/wav")),
        ],
    )


@pytest.fixture
def redis_server(dead_port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis server that persists nothing, on a port of its own, for the test to stop."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(dead_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", dead_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_key_store_down(
    make_settings: Callable[..., Settings],
    redis_server: subprocess.Popen[bytes],
    dead_port: int,
    wav_bytes: bytes,
    mint: Mint,
) -> None:
    settings = make_settings(key_store_url=f"redis://127.0.0.1:{dead_port}/0")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        _add_exercise(client)
        assert _post(client, mint("learner-1"), wav_bytes).status_code == 201
        redis_server.terminate()
        redis_server.wait(timeout=10)
        response = _post(client, mint("learner-2"), wav_bytes)
    _assert_names_nothing_inside(response, 503, "unavailable", str(dead_port))


def test_idempotency_store_down(
    app: FastAPI,
    dead_port: int,
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
) -> None:
    app.state.idempotency = open_idempotency_store(
        f"redis://127.0.0.1:{dead_port}/0", namespace="faults", ttl_s=60
    )
    response = upload(mint(), wav_bytes, headers={"Idempotency-Key": "retry-key-0001"})
    _assert_names_nothing_inside(response, 503, "unavailable", str(dead_port))


def test_file_store_gone(
    app: FastAPI, tmp_path: Path, wav_bytes: bytes, upload: Upload, mint: Mint
) -> None:
    root = app.state.store.root
    root.rename(root.with_name("moved-away"))  # an unmounted volume, a deleted folder
    response = upload(mint(), wav_bytes)
    _assert_names_nothing_inside(response, 503, "storage_unavailable", str(tmp_path), "blobs")
