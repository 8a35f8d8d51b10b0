"""``Idempotency-Key`` on POST /v1/clips: a retry after a lost answer is answered 201 again and
stores nothing twice; another key of the same learner still meets the contribution cap."""

from __future__ import annotations

import hashlib
import json
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from aggregate.tables import PendingClip
from chorus.app import create_app
from core.auth import Role, create_key
from core.idempotency import Claim, TmpfsIdempotencyStore, key_hash
from core.settings import Settings
from tests.ingest.conftest import NOTHING, Mint, Stored, Upload
from tests.live_server import serving

KEY = "upload-3f0c9a51-0b7e-4f6e-9a57-2d1c8e4b7a10"


def _key(headers: dict[str, str] | None = None, key: str = KEY) -> dict[str, str]:
    return {**(headers or {}), "Idempotency-Key": key}


@pytest.mark.usefixtures("catalog")
def test_a_retry_with_the_same_key_gets_the_first_answer(
    upload: Upload, mint: Mint, wav_bytes: bytes, stored: Callable[[], Stored]
) -> None:
    token = mint("learner-idem")
    first = upload(token, wav_bytes, headers=_key())
    assert first.status_code == 201, first.text
    again = upload(token, wav_bytes, headers=_key())
    assert again.status_code == 201
    assert again.json() == first.json()
    assert stored() == Stored(objects=1, rows=1)
    # Another key, or none, by the same learner for the same exercise meets the cap as before.
    other = upload(token, wav_bytes, headers=_key(key="upload-another-key-0001"))
    assert other.status_code == 409
    assert other.json()["code"] == "contribution_limit"
    assert upload(token, wav_bytes).json()["code"] == "contribution_limit"
    assert stored() == Stored(objects=1, rows=1)


@pytest.mark.usefixtures("catalog")
def test_a_refused_upload_frees_its_key(
    upload: Upload, mint: Mint, wav_bytes: bytes, stored: Callable[[], Stored]
) -> None:
    token = mint("learner-idem")
    refused = upload(token, b"RIFF not audio at all", headers=_key())
    assert refused.status_code in (415, 422)
    assert stored() == NOTHING
    accepted = upload(token, wav_bytes, headers=_key())
    assert accepted.status_code == 201, accepted.text
    assert stored() == Stored(objects=1, rows=1)


@pytest.mark.usefixtures("catalog")
def test_a_key_still_in_use_answers_409_busy(
    app: FastAPI, upload: Upload, mint: Mint, wav_bytes: bytes, stored: Callable[[], Stored]
) -> None:
    assert app.state.idempotency.claim(key_hash(KEY)) is Claim.NEW  # a first request running
    busy = upload(mint("learner-idem"), wav_bytes, headers=_key())
    assert busy.status_code == 409
    assert busy.json()["code"] == "idempotency_key_busy"
    assert stored() == NOTHING


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize("bad", ["short", "x" * 129, "spaces are not allowed", "semi;colon;key"])
def test_a_malformed_key_is_refused_and_nothing_stored(
    upload: Upload, mint: Mint, wav_bytes: bytes, stored: Callable[[], Stored], bad: str
) -> None:
    response = upload(mint(), wav_bytes, headers={"Idempotency-Key": bad})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert stored() == NOTHING


@pytest.mark.usefixtures("catalog")
def test_the_key_needs_a_valid_consent_token_first(
    upload: Upload, wav_bytes: bytes, stored: Callable[[], Stored]
) -> None:
    response = upload("not-a-token", wav_bytes, headers=_key())
    assert response.status_code == 401
    assert stored() == NOTHING


@pytest.mark.usefixtures("catalog")
def test_only_a_hash_of_the_key_is_kept_in_memory(
    app: FastAPI, upload: Upload, mint: Mint, wav_bytes: bytes
) -> None:
    store = app.state.idempotency
    assert isinstance(store, TmpfsIdempotencyStore)  # the tests' key store is tmpfs
    assert str(store.folder).startswith("/dev/shm/")
    assert upload(mint("learner-idem"), wav_bytes, headers=_key()).status_code == 201
    entries = list(store.folder.iterdir())
    assert [entry.name for entry in entries] == [hashlib.sha256(KEY.encode()).hexdigest()]
    assert entries[0].read_bytes() == b"done"
    assert entries[0].stat().st_mode & 0o077 == 0
    database = app.state.database.url.split("///")[-1]
    assert KEY.encode() not in Path(database).read_bytes()


def _post_and_never_read(base: str, token: str, audio: bytes, key: str) -> socket.socket:
    """Send a whole upload on a connection whose answer is never read (the caller closes it
    once the server is done: a half-close at once would read as a client gone mid-request)."""
    boundary = "lost-answer-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n'
        f"Content-Type: application/json\r\n\r\n{json.dumps({'exercise_id': 'digit-7'})}\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
        f"Content-Type: audio/wav\r\n\r\n"
    ).encode() + audio + f"\r\n--{boundary}--\r\n".encode()
    head = (
        f"POST /v1/clips HTTP/1.1\r\nHost: {urlsplit(base).netloc}\r\n"
        f"Authorization: Bearer {token}\r\nIdempotency-Key: {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    address = urlsplit(base)
    connection = socket.create_connection((address.hostname, address.port))
    connection.sendall(head + body)
    return connection


def test_a_lost_answer_then_a_retry_is_accepted_once(
    make_settings: Callable[..., Settings], mint: Mint, wav_bytes: bytes
) -> None:
    app = create_app(make_settings())
    with serving(app) as base, httpx.Client(base_url=base, timeout=60) as http:
        with app.state.database.session(write=True) as session:
            admin = create_key(session, role=Role.ADMIN, name="idempotency test")
        usage = [{"exercise_id": "digit-7", "learners": 500}]
        assert http.put("/v1/exercises/usage", json=usage,
                        headers={"X-API-Key": admin}).status_code == 200
        token = mint("learner-lost")
        lost = _post_and_never_read(base, token, wav_bytes, KEY)
        deadline = time.monotonic() + 60
        # The server answered (the answer sits unread in the socket): the upload is done.
        while not select.select([lost], [], [], 0.1)[0]:
            assert time.monotonic() < deadline, "the first upload never completed"
        lost.close()  # and the answer is lost

        def post(key: str) -> httpx.Response:
            return http.post(
                "/v1/clips",
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
                files=[("metadata", (None, b'{"exercise_id": "digit-7"}', "application/json")),
                       ("audio", ("a.wav", wav_bytes, "audio/wav"))],
            )

        retry = post(KEY)
        assert retry.status_code == 201, retry.text
        assert retry.json() == {"status": "accepted"}
        other = post("upload-a-different-key-01")
        assert other.status_code == 409
        assert other.json()["code"] == "contribution_limit"
        with app.state.database.session() as session:
            rows = session.execute(sa.select(sa.func.count()).select_from(PendingClip))
            assert rows.scalar_one() == 1
