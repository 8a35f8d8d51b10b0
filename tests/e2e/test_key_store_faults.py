"""Uploads through key-store faults on PostgreSQL with a Redis key store of the test's own.

The key store stops taking writes right after an upload's row committed (``CLIENT PAUSE …
WRITE``, as a Redis failover or a stalled primary would): the answer is still 201, and a retry
with the same Idempotency-Key stores nothing twice, so the clip is released once. ``/readyz``
says "not ready" while the key store is down, and ready again once it is back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aggregate.jobs import run_release_cycle
from aggregate.release_checks import check_recordings_released_once
from aggregate.tables import PendingClip, ReleasedClip
from chorus.app import create_app
from chorus.devservers import provision_postgres_database
from chorus.synthetic_voice import voiced_wav
from core.auth import Role, create_key
from core.settings import Settings
from ingest.consent import mint_token
from ingest.decoder import DecoderPool
from ingest.service import UploadJob
from policies.context import AuditContext
from tests.consent import ConsentKeys
from tests.redis_server import RedisServer

KEY = "upload-5b1e07c2-7d0f-4b8e-93f1-6c0a2f9d4e11"
PAUSE_MS = 7000  # longer than the key store client's 5 s socket timeout
CLIP = "7_jackson_32.wav"
Mint = Callable[[str], str]


@pytest.fixture
def mint(consent_keys: ConsentKeys) -> Mint:
    return lambda learner: mint_token(consent_keys.private_key, learner_id=learner)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def postgres_app(
    make_settings: Callable[..., Settings], redis_server: RedisServer
) -> Iterator[FastAPI]:
    with provision_postgres_database(prefix="chorus_keyfaults") as url:
        yield create_app(make_settings(database_url=url, key_store_url=redis_server.url))


def _post(client: TestClient, token: str, audio: bytes, key: str | None = KEY) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(
        "/v1/clips",
        files=[
            ("metadata", (None, json.dumps({"exercise_id": "digit-7"}).encode())),
            ("audio", ("a.wav", audio, "audio/wav")),
        ],
        headers=headers,
    )


def _rows(app: FastAPI) -> int:
    with app.state.database.session() as session:
        count: int = session.execute(
            sa.select(sa.func.count()).select_from(PendingClip)
        ).scalar_one()
    return count


def _catalog(client: TestClient, app: FastAPI) -> None:
    with app.state.database.session(write=True) as session:
        admin = create_key(session, role=Role.ADMIN, name="key store faults")
    usage = [{"exercise_id": "digit-7", "learners": 500}]
    response = client.put("/v1/exercises/usage", json=usage, headers={"X-API-Key": admin})
    assert response.status_code == 200, response.text


def test_a_key_store_that_stops_after_the_commit_loses_nothing_and_stores_nothing_twice(
    postgres_app: FastAPI,
    redis_server: RedisServer,
    mint: Mint,
    fsdd_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = postgres_app
    redis = redis_server.client()
    with TestClient(app, raise_server_exceptions=False) as client:
        _catalog(client, app)
        decoder: DecoderPool = app.state.decoder
        store_in_worker = decoder.sanitize_and_store

        async def commit_then_pause(job: UploadJob) -> None:
            await store_in_worker(job)  # the row is committed in the worker
            redis.client_pause(PAUSE_MS, all=False)  # WRITE: reads answer, writes hang

        token = mint("learner-paused")
        audio = (fsdd_dir / CLIP).read_bytes()
        try:
            with monkeypatch.context() as patch:
                patch.setattr(decoder, "sanitize_and_store", commit_then_pause)
                first = _post(client, token, audio)
            # Before: 503 though the bucket had the row, and the retry stored it again.
            assert first.status_code == 201, first.text
            assert _rows(app) == 1
            # A retry (the answer was lost) while the key store still takes no writes.
            retry = _post(client, token, audio)
            assert retry.status_code == 201, retry.text
        finally:
            redis.client_unpause()
        again = _post(client, token, audio)
        assert again.status_code == 201, again.text
        assert _rows(app) == 1
        # k = 5 (demo policy): four more learners fill the bucket; one release, the clip once.
        for index in range(4):
            # Recordings of their own: a bucket takes a recording once.
            take = voiced_wav(seed=500 + index, seconds=0.8, pitch_hz=100.0 + 20.0 * index)
            response = _post(client, mint(f"learner-{index}"), take, key=None)
            assert response.status_code == 201, response.text
        for _cycle in range(2):
            run_release_cycle(
                database=app.state.database,
                keys=app.state.keys,
                store=app.state.store,
                policy=app.state.policy,
                interval_s=3600,
            )
        with app.state.database.session() as session:
            released = session.execute(sa.select(ReleasedClip.sha256)).scalars().all()
        assert len(released) == 5
        assert len(set(released)) == 5
        context = AuditContext(
            database=app.state.database, store=app.state.store, policy=app.state.policy
        )
        assert list(check_recordings_released_once(context)) == []
        # After the release the pending row is gone; the store's entry still answers.
        after = _post(client, token, audio)
        assert after.status_code == 201, after.text
        assert _rows(app) == 0


def test_readyz_says_not_ready_through_a_key_store_outage(
    make_settings: Callable[..., Settings], redis_server: RedisServer, mint: Mint, fsdd_dir: Path
) -> None:
    app = create_app(make_settings(key_store_url=redis_server.url))
    with TestClient(app, raise_server_exceptions=False) as client:
        _catalog(client, app)
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["key_store"] == "ok"
        assert ready.json()["checks"]["idempotency_store"] == "ok"
        redis_server.stop()
        try:
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/problem+json"
            checks = down.json()["checks"]
            assert checks["database"] == checks["storage"] == "ok"
            assert checks["key_store"] == checks["idempotency_store"] == "unavailable"
            upload = _post(client, mint("learner-outage"), (fsdd_dir / CLIP).read_bytes())
            assert upload.status_code == 503  # what /readyz said
        finally:
            redis_server.start()
        assert client.get("/readyz").status_code == 200
        upload = _post(client, mint("learner-outage"), (fsdd_dir / CLIP).read_bytes())
        assert upload.status_code == 201, upload.text
