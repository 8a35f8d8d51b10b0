"""Fixtures of the aggregate tests: real FSDD clips as FLAC, seeded buckets, databases and
stores, a live server.

The clips and the seeding are in ``tests/aggregate/clips.py``, the census of where each clip's
bytes are in ``census.py``, release cycles and audit reads in ``releases.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chorus.devservers import provision_postgres_database
from core.db import Database
from core.storage import BlobStore, open_store
from policies.policy import Policy, load_policy
from tests.aggregate.clips import SPEAKERS, ClipSource, FlacClip, Seed, seed_clip, to_flac


@pytest.fixture(scope="session")
def fsdd_flac(fsdd_dir: Path) -> ClipSource:
    """``fsdd_flac(digit, speaker, take)``: that FSDD recording as FLAC (cached)."""
    cache: dict[tuple[int, str, int], FlacClip] = {}

    def get(digit: int, speaker: str, take: int) -> FlacClip:
        key = (digit, speaker, take)
        if key not in cache:
            cache[key] = to_flac(fsdd_dir / f"{digit}_{speaker}_{take}.wav")
        return cache[key]

    return get


@pytest.fixture
def seed(fsdd_flac: ClipSource) -> Seed:
    """``seed(database, store, digit=3, speakers=5)``: FSDD clips of the first five speakers."""

    def run(
        database: Database,
        store: BlobStore,
        *,
        digit: int,
        speakers: int = 5,
        takes: int = 1,
        exercise_id: str | None = None,
        first_speaker: int = 0,
    ) -> list[FlacClip]:
        clips: list[FlacClip] = []
        for speaker in SPEAKERS[first_speaker:speakers]:
            for take in range(takes):
                clip = fsdd_flac(digit, speaker, take)
                seed_clip(
                    database,
                    store,
                    exercise_id=exercise_id or f"digit-{digit}",
                    learner_id=f"learner-{speaker}",
                    clip=clip,
                    max_clips_per_contributor=takes,
                )
                clips.append(clip)
        return clips

    return run


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database in the test's folder."""
    db = Database(f"sqlite:///{tmp_path / 'chorus.db'}")
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return open_store(f"file://{tmp_path / 'blobs'}")


@pytest.fixture
def policy() -> Policy:
    return load_policy("demo")


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    with provision_postgres_database(prefix="chorus_aggregate") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_on_both(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of each kind in turn: a SQLite file, then a fresh PostgreSQL one."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'chorus.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    db = Database(url)
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def live_url(client: TestClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test app served over real HTTP on a free loopback port (lifespan already entered)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("CHORUS_URL", url)
    yield url
    server.should_exit = True
    thread.join(timeout=10)
