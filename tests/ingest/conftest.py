"""Fixtures of the ingest tests: tokens, a usage catalog, uploads and what got stored (their
types and constants are in ``tests/ingest/uploads.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aggregate.tables import PendingClip
from chorus.synthetic_voice import voiced_wav
from core.auth import Role
from ingest.consent import mint_token
from tests.consent import ConsentKeys
from tests.ingest.uploads import (
    CLIP,
    ELIGIBLE_EXERCISES,
    RARE_EXERCISE,
    Mint,
    Recording,
    Stored,
    Upload,
)


@pytest.fixture
def mint(consent_keys: ConsentKeys) -> Mint:
    """A consent token for a learner: ``mint("learner-1", age=15)``."""

    def factory(learner_id: str = "learner-1", **claims: Any) -> str:
        return mint_token(consent_keys.private_key, learner_id=learner_id, **claims)

    return factory


@pytest.fixture
def catalog(client: TestClient, auth: Callable[[Role], dict[str, str]]) -> list[str]:
    """Ten eligible exercises (digit-0 … digit-9) and one rare one."""
    entries = [{"exercise_id": e, "learners": 500} for e in ELIGIBLE_EXERCISES]
    entries.append({"exercise_id": RARE_EXERCISE, "learners": 5})
    response = client.put("/v1/exercises/usage", json=entries, headers=auth(Role.ADMIN))
    assert response.status_code == 200, response.text
    return ELIGIBLE_EXERCISES


@pytest.fixture
def wav_bytes(fsdd_dir: Path) -> bytes:
    return (fsdd_dir / CLIP).read_bytes()


@pytest.fixture
def upload(client: TestClient) -> Upload:
    """POST /v1/clips with a token, audio bytes and metadata (a dict, or raw bytes)."""

    def post(
        token: str | None,
        audio: bytes,
        metadata: dict[str, Any] | bytes | None = None,
        *,
        filename: str = "clip.wav",
        media_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
    ) -> httpx2.Response:
        if metadata is None:
            metadata = {"exercise_id": "digit-7"}
        raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        return client.post(
            "/v1/clips",
            files=[
                ("metadata", (None, raw, "application/json")),
                ("audio", (filename, audio, media_type)),
            ],
            headers=all_headers,
        )

    return post


@pytest.fixture
def stored(app: FastAPI) -> Callable[[], Stored]:
    """How many pending objects and pending rows exist right now."""

    def count() -> Stored:
        objects = len(list(app.state.store.list("pending/")))
        with app.state.database.session() as session:
            rows = session.execute(sa.select(sa.func.count()).select_from(PendingClip)).scalar_one()
        return Stored(objects=objects, rows=rows)

    return count


@pytest.fixture
def recording() -> Recording:
    """``recording(n)``: the n-th of many distinct recordings (a synthesized voice of its own,
    0.8 s at 16 kHz), for tests that fill a bucket: a bucket refuses the same recording twice."""

    def make(index: int) -> bytes:
        return voiced_wav(seed=1000 + index, seconds=0.8, pitch_hz=100.0 + 7.0 * (index % 9))

    return make
