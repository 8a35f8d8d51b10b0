"""The canary: identifying strings sent every way an app could leak them are stored nowhere.

Markers ride in the consent token (subject and extra claims), the metadata, the multipart file
name, HTTP headers and the audio's own tags (WAV LIST/INFO, FLAC Vorbis comments, MP3 ID3).
Afterwards no byte of the SQLite files (incl. -wal), the blob tree or the captured logs holds
any of them (P3, P4, P7).
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.auth import Role
from core.logs import JsonFormatter
from tests.ingest.samples import flac_with_comments, mp3_with_id3, wav_with_info
from tests.ingest.uploads import Mint, Upload


class _Markers:
    def __init__(self) -> None:
        self.all: list[str] = []

    def new(self, where: str) -> str:
        marker = f"CANARY{secrets.token_hex(6).upper()}{where.upper()}"
        self.all.append(marker)
        return marker


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record of every logger, rendered the way production renders it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.mark.usefixtures("catalog")
def test_no_marker_survives_anywhere(
    tmp_path: Path,
    app: FastAPI,
    client: TestClient,
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    caplog: pytest.LogCaptureFixture,
    json_log: io.StringIO,
    auth: Callable[[Role], dict[str, str]],
) -> None:
    caplog.set_level(logging.DEBUG)
    markers = _Markers()
    tags_dir = tmp_path / "inputs"
    tags_dir.mkdir()
    tagged = {
        "wav": wav_with_info(
            wav_bytes, {"INAM": markers.new("wavname"), "ICRD": markers.new("wavdate")}
        ),
        "flac": flac_with_comments(
            wav_bytes,
            {"TITLE": markers.new("flactitle"), "DATE": markers.new("flacdate")},
            tags_dir,
        ),
        "mp3": mp3_with_id3(wav_bytes, markers.new("id3title"), markers.new("id3txxx"), tags_dir),
    }
    tag_markers = (markers.all[0:2], markers.all[2:4], markers.all[4:6])
    for audio, expected in zip(tagged.values(), tag_markers, strict=True):
        assert all(m.encode() in audio for m in expected), "the inputs carry their tags"

    def send(kind: str, audio: bytes, *, age: int = 30) -> int:
        token = mint(
            markers.new(f"sub{kind}"),
            age=age,
            extra_claims={"name": markers.new("claimname"), "email": markers.new("claimmail")},
        )
        metadata = {
            # One exercise per container: the three are one recording, which a bucket takes once.
            "exercise_id": {"flac": "digit-8", "mp3": "digit-9"}.get(kind, "digit-7"),
            "user_id": markers.new("metauser"),
            "name": markers.new("metaname"),
            "device_id": markers.new("metadevice"),
            "locale": markers.new("metalocale"),
            "recorded_at": markers.new("metatime"),
        }
        headers = {
            "User-Agent": markers.new("useragent"),
            "X-Device-Id": markers.new("headerdevice"),
            "X-Forwarded-For": "203.0.113.7",
            "Cookie": f"session={markers.new('cookie')}",
            "Referer": f"https://example.invalid/{markers.new('referer')}",
        }
        response = upload(
            token, audio, metadata, filename=f"{markers.new('filename')}.{kind}", headers=headers
        )
        return response.status_code

    for kind, audio in tagged.items():
        assert send(kind, audio) == 201
    assert send("minor", tagged["wav"], age=12) == 403

    leaving = mint(markers.new("subleaving"), extra_claims={"name": markers.new("leavername")})
    assert upload(leaving, tagged["flac"], {"exercise_id": "digit-3"}).status_code == 201
    withdrawal = client.post(
        "/v1/consent/withdrawals",
        headers={"Authorization": f"Bearer {leaving}", "User-Agent": markers.new("withdrawua")},
    )
    assert withdrawal.json() == {"withdrawn": 1}
    metrics = client.get("/metrics", headers=auth(Role.AUDITOR))
    assert metrics.status_code == 200
    assert len(list(app.state.store.list("pending/"))) == 3
    markers.all.append("203.0.113.7")

    haystacks: dict[str, bytes] = {}
    for path in sorted(tmp_path.glob("chorus.db*")):
        haystacks[path.name] = path.read_bytes()
    assert "chorus.db-wal" in haystacks or "chorus.db" in haystacks
    for path in sorted((tmp_path / "blobs").rglob("*")):
        haystacks[f"blob name {path}"] = str(path.relative_to(tmp_path)).encode()
        if path.is_file():
            haystacks[f"blob {path}"] = path.read_bytes()
    haystacks["caplog"] = caplog.text.encode()
    haystacks["records"] = repr([vars(r) for r in caplog.records]).encode()
    haystacks["json log"] = json_log.getvalue().encode()
    haystacks["metrics"] = metrics.content
    assert any(name.startswith("blob ") for name in haystacks)

    leaks = [
        (marker, where)
        for marker in markers.all
        for where, data in haystacks.items()
        if marker.encode() in data or marker.encode("utf-16-le") in data
    ]
    assert leaks == []
