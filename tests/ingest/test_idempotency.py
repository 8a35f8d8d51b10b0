"""``Idempotency-Key`` on POST /v1/clips: a retry after a lost answer is answered 201 again and
stores nothing twice; another key of the same learner still meets the contribution cap."""

from __future__ import annotations

import json
import os
import select
import socket
import sqlite3
import subprocess
import sys
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
from core.errors import Unavailable
from core.idempotency import Claim, IdempotentUpload, TmpfsIdempotencyStore, idempotent_upload
from core.settings import Settings
from tests.ingest.uploads import CLIP, NOTHING, Mint, Stored, Upload
from tests.live_server import serving

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "upload-3f0c9a51-0b7e-4f6e-9a57-2d1c8e4b7a10"


def _key(headers: dict[str, str] | None = None, key: str = KEY) -> dict[str, str]:
    return {**(headers or {}), "Idempotency-Key": key}


def _request(audio: bytes, *, learner: str, exercise: str = "digit-7") -> IdempotentUpload:
    return idempotent_upload(KEY, learner_id=learner, exercise_id=exercise, audio=audio)


@pytest.fixture
def other_wav(fsdd_dir: Path) -> bytes:
    other = next(path for path in sorted(fsdd_dir.glob("7_*.wav")) if path.name != CLIP)
    return other.read_bytes()


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
def test_a_key_still_in_use_answers_409_busy_with_retry_after(
    app: FastAPI, upload: Upload, mint: Mint, wav_bytes: bytes, stored: Callable[[], Stored]
) -> None:
    first = _request(wav_bytes, learner="learner-idem")
    assert app.state.idempotency.claim(first) is Claim.NEW  # a first request running here
    busy = upload(mint("learner-idem"), wav_bytes, headers=_key())
    assert busy.status_code == 409
    assert busy.json()["code"] == "idempotency_key_busy"
    assert int(busy.headers["Retry-After"]) >= 1
    assert stored() == NOTHING


@pytest.mark.usefixtures("catalog")
def test_another_learners_key_is_a_fresh_key_for_them(
    upload: Upload, mint: Mint, wav_bytes: bytes, other_wav: bytes, stored: Callable[[], Stored]
) -> None:
    assert upload(mint("learner-a"), wav_bytes, headers=_key()).status_code == 201
    # Their own recording (a bucket takes a recording once), sent with the same key.
    theirs = upload(mint("learner-b"), other_wav, headers=_key())
    assert theirs.status_code == 201, theirs.text
    assert stored() == Stored(objects=2, rows=2)  # both clips kept, not one acknowledged twice


@pytest.mark.usefixtures("catalog")
def test_the_same_key_for_another_exercise_or_other_audio_is_refused(
    upload: Upload, mint: Mint, wav_bytes: bytes, other_wav: bytes, stored: Callable[[], Stored]
) -> None:
    token = mint("learner-idem")
    assert upload(token, wav_bytes, headers=_key()).status_code == 201
    for metadata, audio in (({"exercise_id": "digit-3"}, wav_bytes), (None, other_wav)):
        reused = upload(token, audio, metadata, headers=_key())
        assert reused.status_code == 422, reused.text
        assert reused.json()["code"] == "idempotency_key_reused"
    assert stored() == Stored(objects=1, rows=1)
    # The first request itself is still answered as it was.
    assert upload(token, wav_bytes, headers=_key()).status_code == 201


@pytest.mark.usefixtures("catalog")
def test_the_answer_is_201_once_the_row_is_committed_whatever_the_key_store_says(
    app: FastAPI,
    upload: Upload,
    mint: Mint,
    wav_bytes: bytes,
    stored: Callable[[], Stored],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = app.state.idempotency

    def no_answer(_upload: object) -> None:
        raise Unavailable("the key store does not answer (TimeoutError)")

    token = mint("learner-idem")
    with monkeypatch.context() as patch:
        patch.setattr(store, "complete", no_answer)
        first = upload(token, wav_bytes, headers=_key())
    assert first.status_code == 201, first.text
    assert stored() == Stored(objects=1, rows=1)
    # Its entry was left busy by a live process; the bucket's record of the request answers.
    again = upload(token, wav_bytes, headers=_key())
    assert again.status_code == 201, again.text
    assert stored() == Stored(objects=1, rows=1)


@pytest.mark.usefixtures("catalog")
def test_a_retry_whose_entry_is_gone_is_recognised_by_its_row(
    app: FastAPI, upload: Upload, mint: Mint, wav_bytes: bytes, stored: Callable[[], Stored]
) -> None:
    token = mint("learner-idem")
    assert upload(token, wav_bytes, headers=_key()).status_code == 201
    with sqlite3.connect(app.state.idempotency.path) as entries:
        entries.execute("DELETE FROM entries")  # a restarted key store, an expired window
    again = upload(token, wav_bytes, headers=_key())
    assert again.status_code == 201, again.text
    assert stored() == Stored(objects=1, rows=1)


@pytest.mark.usefixtures("catalog")
def test_a_key_held_by_a_process_that_died_is_taken_over_at_once(
    app: FastAPI, upload: Upload, mint: Mint, wav_bytes: bytes, stored: Callable[[], Stored]
) -> None:
    store = app.state.idempotency
    claim_and_die = (
        "import sys; from pathlib import Path; "
        "from core.idempotency import TmpfsIdempotencyStore, idempotent_upload; "
        "store = TmpfsIdempotencyStore(Path(sys.argv[1])); "
        "upload = idempotent_upload(sys.argv[2], learner_id='learner-idem', "
        "exercise_id='digit-7', audio=Path(sys.argv[3]).read_bytes()); "
        "assert store.claim(upload).value == 'new'"
    )
    audio = app.state.settings.storage_url.removeprefix("file://") + "/../upload.wav"
    Path(audio).write_bytes(wav_bytes)
    subprocess.run(
        [sys.executable, "-c", claim_and_die, str(store.folder), KEY, audio],
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    started = time.monotonic()
    retry = upload(mint("learner-idem"), wav_bytes, headers=_key())
    assert retry.status_code == 201, retry.text
    assert time.monotonic() - started < 10
    assert stored() == Stored(objects=1, rows=1)


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
def test_only_digests_of_the_key_are_kept(
    app: FastAPI, upload: Upload, mint: Mint, wav_bytes: bytes
) -> None:
    store = app.state.idempotency
    assert isinstance(store, TmpfsIdempotencyStore)  # the tests' key store is tmpfs
    assert str(store.folder).startswith("/dev/shm/")
    assert (store.folder.stat().st_mode & 0o777) == 0o700
    assert upload(mint("learner-idem"), wav_bytes, headers=_key()).status_code == 201
    assert store.entries() == 1
    for memory in store.folder.iterdir():
        assert memory.stat().st_mode & 0o077 == 0
        assert KEY.encode() not in memory.read_bytes()
        assert b"learner-idem" not in memory.read_bytes()
    database = app.state.database.url.split("///")[-1]
    assert KEY.encode() not in Path(database).read_bytes()
    with app.state.database.session() as session:
        digests = session.execute(sa.select(PendingClip.request_digest)).scalars().all()
    assert len(digests) == 1
    assert digests[0] is not None
    assert len(digests[0]) == 64


def _post_and_never_read(base: str, token: str, audio: bytes, key: str) -> socket.socket:
    """Send a whole upload on a connection whose answer is never read (the caller closes it
    once the server is done: a half-close at once would read as a client gone mid-request)."""
    boundary = "lost-answer-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n'
            f"Content-Type: application/json\r\n\r\n{json.dumps({'exercise_id': 'digit-7'})}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + audio
        + f"\r\n--{boundary}--\r\n".encode()
    )
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
        assert (
            http.put("/v1/exercises/usage", json=usage, headers={"X-API-Key": admin}).status_code
            == 200
        )
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
                files=[
                    ("metadata", (None, b'{"exercise_id": "digit-7"}', "application/json")),
                    ("audio", ("a.wav", wav_bytes, "audio/wav")),
                ],
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
