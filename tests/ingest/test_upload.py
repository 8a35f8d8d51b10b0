"""POST /v1/clips end to end on real FSDD recordings: every answer, nothing kept on refusal."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import numpy as np
import pytest
import soundfile as sf
import soxr
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aggregate.tables import Bucket
from core.auth import Role
from core.metrics import REGISTRY
from tests.ingest.samples import (
    flac_claiming_length,
    tone_wav,
    transcode,
    wav_claiming_length,
)
from tests.ingest.uploads import NOTHING, RARE_EXERCISE, Mint, Stored, Upload
from tests.pending import opened_pending_clips

pytestmark = pytest.mark.usefixtures("catalog")


def _problem(response: httpx2.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


@pytest.mark.parametrize("kind", ["wav", "flac", "ogg", "opus", "mp3"])
def test_accepts_each_container_and_stores_clean_flac(
    kind: str,
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
    app: FastAPI,
) -> None:
    audio = wav_bytes if kind == "wav" else transcode(wav_bytes, kind)
    response = upload(mint(), audio)
    assert response.status_code == 201, response.text
    assert response.json() == {"status": "accepted"}
    assert stored() == Stored(objects=1, rows=1)
    (clip,) = opened_pending_clips(app.state.database, app.state.store).values()
    assert clip is not None
    info = sf.info(io.BytesIO(clip))
    assert (info.format, info.subtype, info.channels, info.samplerate) == (
        "FLAC",
        "PCM_16",
        1,
        16000,
    )
    assert info.duration == pytest.approx(0.54, abs=0.08)  # codecs pad a little


def test_stereo_48k_is_downmixed_and_resampled(
    wav_bytes: bytes, upload: Upload, mint: Mint, app: FastAPI
) -> None:
    mono, rate = sf.read(io.BytesIO(wav_bytes), dtype="float32")
    stereo = np.stack([mono, -mono * 0.5], axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, soxr.resample(stereo, rate, 48000), 48000, format="WAV")
    assert upload(mint(), buffer.getvalue()).status_code == 201
    (clip,) = opened_pending_clips(app.state.database, app.state.store).values()
    assert clip is not None
    info = sf.info(io.BytesIO(clip))
    assert (info.channels, info.samplerate) == (1, 16000)


@pytest.mark.parametrize(
    ("token_claims", "status", "code"),
    [
        ({"child": True, "age": 30}, 403, "minor"),
        ({"age": None}, 403, "minor"),
        ({"age": 15}, 403, "minor"),
        ({"scope": "marketing"}, 403, "consent_scope"),
        ({"consent_version": "speech-research-v0"}, 403, "consent_scope"),
        ({"ttl_s": -3600}, 401, "consent_invalid"),
    ],
)
def test_refused_tokens_store_nothing(
    token_claims: dict[str, object],
    status: int,
    code: str,
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    _problem(upload(mint(**token_claims), wav_bytes), status, code)
    assert stored() == NOTHING


def test_missing_token_is_401(
    wav_bytes: bytes, upload: Upload, stored: Callable[[], Stored]
) -> None:
    response = upload(None, wav_bytes)
    _problem(response, 401, "consent_invalid")
    assert response.headers["www-authenticate"] == "Bearer"
    assert stored() == NOTHING


def test_age_at_the_minimum_is_accepted(wav_bytes: bytes, upload: Upload, mint: Mint) -> None:
    assert upload(mint(age=16), wav_bytes).status_code == 201


@pytest.mark.parametrize("exercise_id", ["digit-x", RARE_EXERCISE])
def test_unknown_or_rare_exercise_is_422(
    exercise_id: str,
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
    app: FastAPI,
) -> None:
    response = upload(mint(), wav_bytes, {"exercise_id": exercise_id})
    _problem(response, 422, "exercise_not_eligible")
    assert stored() == NOTHING
    with app.state.database.session() as session:
        assert session.query(Bucket).count() == 0  # not even a bucket is opened


@pytest.mark.parametrize(
    "metadata",
    [
        b"{not json",
        b'["digit-7"]',
        b'{"course": "en_hu"}',
        b'{"exercise_id": 7}',
        b"\xff\xfe",
        # A field named twice: which one counts would depend on the parser.
        b'{"exercise_id": "digit-7", "exercise_id": "rare-1"}',
        b'{"exercise_id": "digit-7", "extra": {"a": 1, "a": 2}}',
    ],
)
def test_malformed_metadata_is_422(
    metadata: bytes,
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    response = upload(mint(), wav_bytes, metadata)
    _problem(response, 422, "invalid_metadata")
    assert stored() == NOTHING


def test_unknown_metadata_fields_are_dropped_and_counted(
    wav_bytes: bytes, upload: Upload, mint: Mint
) -> None:
    before = REGISTRY.get_sample_value("chorus_ingest_metadata_fields_dropped_total") or 0.0
    metadata = {"exercise_id": "digit-7", "user_id": "u1", "locale": "hu", "recorded_at": "x"}
    assert upload(mint(), wav_bytes, metadata).status_code == 201
    after = REGISTRY.get_sample_value("chorus_ingest_metadata_fields_dropped_total")
    assert after == before + 3


def test_outcomes_are_counted_by_code_except_the_age_gate(
    wav_bytes: bytes, upload: Upload, mint: Mint
) -> None:
    def value(outcome: str) -> float | None:
        return REGISTRY.get_sample_value("chorus_ingest_uploads_total", {"outcome": outcome})

    accepted, rare = value("accepted") or 0.0, value("exercise_not_eligible") or 0.0
    upload(mint(), wav_bytes)
    upload(mint("learner-2"), wav_bytes, {"exercise_id": RARE_EXERCISE})
    upload(mint("learner-3", age=12), wav_bytes)
    assert (value("accepted"), value("exercise_not_eligible")) == (accepted + 1, rare + 1)
    assert value("minor") is None  # P2: a minor's attempt is not counted


def test_declared_oversized_body_is_413_before_reading(
    client: TestClient, mint: Mint, stored: Callable[[], Stored]
) -> None:
    response = client.post(
        "/v1/clips",
        content=b"x" * 1024,
        headers={
            "Authorization": f"Bearer {mint()}",
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(50_000_000),
        },
    )
    _problem(response, 413, "payload_too_large")
    assert stored() == NOTHING


def test_streamed_oversized_audio_is_413(
    client: TestClient, mint: Mint, stored: Callable[[], Stored]
) -> None:
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield (
            b'--b\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'
            b'{"exercise_id": "digit-7"}\r\n'
            b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
        )
        for _ in range(120):  # 7.5 MB against the demo policy's 5 MB, no Content-Length
            sent += 65536
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    response = client.post(
        "/v1/clips",
        content=body(),
        headers={
            "Authorization": f"Bearer {mint()}",
            "Content-Type": "multipart/form-data; boundary=b",
        },
    )
    _problem(response, 413, "payload_too_large")
    assert stored() == NOTHING


@pytest.mark.parametrize(
    "audio",
    [b"not audio at all" * 100, b"RIFF\x10\x00\x00\x00WAVEfmt ", b""],
    ids=["garbage", "truncated-header", "empty"],
)
def test_undecodable_audio_is_415(
    audio: bytes, upload: Upload, mint: Mint, stored: Callable[[], Stored]
) -> None:
    _problem(upload(mint(), audio), 415, "unsupported_audio")
    assert stored() == NOTHING


def test_out_of_bounds_audio_is_422(
    wav_bytes: bytes, upload: Upload, mint: Mint, stored: Callable[[], Stored]
) -> None:
    cases = {
        "too short": tone_wav(0.1),
        "too long": tone_wav(31.0),
        "claims hours": flac_claiming_length(wav_bytes, frames=8000 * 3 * 3600),
        "rate too low": transcode(wav_bytes, "wav", sample_rate=4000),
        "rate too high": transcode(wav_bytes, "flac", sample_rate=96000),
    }
    for name, audio in cases.items():
        response = upload(mint(), audio)
        assert response.status_code == 422, (name, response.text)
        assert response.json()["code"] == "invalid_audio", name
    assert stored() == NOTHING


def test_wav_header_claiming_hours_is_read_only_as_far_as_its_data(
    wav_bytes: bytes, upload: Upload, mint: Mint, app: FastAPI
) -> None:
    # libsndfile trusts the file's real length over a WAV data size, so only 0.54 s is read.
    assert upload(mint(), wav_claiming_length(wav_bytes, frames=8000 * 3 * 3600)).status_code == 201
    (clip,) = opened_pending_clips(app.state.database, app.state.store).values()
    assert clip is not None
    assert sf.info(io.BytesIO(clip)).duration == pytest.approx(0.54, abs=0.01)


def test_not_multipart_is_422(client: TestClient, mint: Mint, stored: Callable[[], Stored]) -> None:
    response = client.post(
        "/v1/clips", json={"exercise_id": "digit-7"}, headers={"Authorization": f"Bearer {mint()}"}
    )
    _problem(response, 422, "invalid_input")
    assert stored() == NOTHING


def test_missing_audio_part_is_422(
    client: TestClient, mint: Mint, stored: Callable[[], Stored]
) -> None:
    response = client.post(
        "/v1/clips",
        files=[("metadata", (None, json.dumps({"exercise_id": "digit-7"}).encode()))],
        headers={"Authorization": f"Bearer {mint()}"},
    )
    _problem(response, 422, "invalid_input")
    assert stored() == NOTHING


def test_second_clip_of_a_learner_in_a_bucket_is_409(
    fsdd_dir: Path, upload: Upload, mint: Mint, stored: Callable[[], Stored]
) -> None:
    token = mint("learner-9")
    first = (fsdd_dir / "7_theo_35.wav").read_bytes()
    second = (fsdd_dir / "7_nicolas_21.wav").read_bytes()
    assert upload(token, first).status_code == 201
    _problem(upload(token, second), 409, "contribution_limit")
    assert stored() == Stored(objects=1, rows=1)
    # Another exercise is another bucket; another learner has their own cap.
    assert upload(token, second, {"exercise_id": "digit-3"}).status_code == 201
    assert upload(mint("learner-10"), second).status_code == 201
    assert stored() == Stored(objects=3, rows=3)


def test_simultaneous_uploads_of_one_learner_meet_the_cap(
    fsdd_dir: Path, client: TestClient, mint: Mint, stored: Callable[[], Stored]
) -> None:
    token = mint("learner-race")
    clips = [(fsdd_dir / name).read_bytes() for name in ("5_lucas_0.wav", "5_theo_7.wav")]
    barrier = threading.Barrier(len(clips))
    statuses: list[int] = []

    def send(audio: bytes) -> None:
        barrier.wait()
        response = client.post(
            "/v1/clips",
            files=[
                ("metadata", (None, b'{"exercise_id": "digit-5"}')),
                ("audio", ("a.wav", audio)),
            ],
            headers={"Authorization": f"Bearer {token}"},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(clip,)) for clip in clips]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 409]
    assert stored() == Stored(objects=1, rows=1)


def test_usage_catalog_needs_admin(client: TestClient, auth: Callable[..., dict[str, str]]) -> None:
    body = [{"exercise_id": "digit-1", "learners": 1000}]
    assert client.put("/v1/exercises/usage", json=body).status_code == 401
    assert client.put("/v1/exercises/usage", json=body, headers=auth(Role.APP)).status_code == 403
    response = client.put("/v1/exercises/usage", json=body, headers=auth(Role.ADMIN))
    assert response.json() == {"exercises": 1, "eligible": 1}


def test_usage_catalog_replacement_removes_old_exercises(
    client: TestClient,
    auth: Callable[..., dict[str, str]],
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
) -> None:
    body = [{"exercise_id": "digit-1", "learners": 1000}]
    client.put("/v1/exercises/usage", json=body, headers=auth(Role.ADMIN))
    _problem(upload(mint(), wav_bytes, {"exercise_id": "digit-7"}), 422, "exercise_not_eligible")
    assert upload(mint(), wav_bytes, {"exercise_id": "digit-1"}).status_code == 201
