"""Fixtures of the aggregate tests: real FSDD clips as FLAC, seeded buckets, a place census.

FSDD mapping: digit = exercise, speaker = learner. FSDD has six speakers, so a demo-policy
bucket (k = 5) is filled by five of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aggregate.jobs import CycleReport, run_release_cycle
from aggregate.tables import Bucket, PendingClip, ReleasedClip
from chorus.devservers import provision_postgres_database
from core.db import Database
from core.storage import BlobStore, open_store
from policies.audit import verify_chain
from policies.context import shard_members
from policies.policy import POLICY_DIR, Policy, load_policy
from policies.tables import AuditEntry
from tests.keys import keys_for
from tests.pending import opened_pending_clips, seed_pending_clip

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


@dataclass(frozen=True)
class FlacClip:
    name: str
    data: bytes
    duration_s: float
    sample_rate: int
    loudness_dbfs: float

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _to_flac(path: Path) -> FlacClip:
    samples, rate = sf.read(path, dtype="float32", always_2d=False)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) or 1e-9
    return FlacClip(
        name=path.name,
        data=buffer.getvalue(),
        duration_s=len(samples) / rate,
        sample_rate=int(rate),
        loudness_dbfs=20 * float(np.log10(rms)),
    )


ClipSource = Callable[[int, str, int], FlacClip]


@pytest.fixture(scope="session")
def fsdd_flac(fsdd_dir: Path) -> ClipSource:
    """``fsdd_flac(digit, speaker, take)``: that FSDD recording as FLAC (cached)."""
    cache: dict[tuple[int, str, int], FlacClip] = {}

    def get(digit: int, speaker: str, take: int) -> FlacClip:
        key = (digit, speaker, take)
        if key not in cache:
            cache[key] = _to_flac(fsdd_dir / f"{digit}_{speaker}_{take}.wav")
        return cache[key]

    return get


Seed = Callable[..., list[FlacClip]]


def seed_clip(
    database: Database,
    store: BlobStore,
    *,
    exercise_id: str,
    learner_id: str,
    clip: FlacClip,
    max_clips_per_contributor: int = 1,
) -> str:
    """What ingest does after sanitizing: seal and store the object, record its pending row."""
    return seed_pending_clip(
        database,
        store,
        exercise_id=exercise_id,
        learner_id=learner_id,
        flac=clip.data,
        duration_s=clip.duration_s,
        sample_rate=clip.sample_rate,
        loudness_dbfs=clip.loudness_dbfs,
        max_clips_per_contributor=max_clips_per_contributor,
    )


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
        clips = []
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


@dataclass(frozen=True)
class Census:
    """Where every clip's bytes are: pending objects, released objects, and the rows."""

    pending: Counter[str]
    released: Counter[str]
    pending_rows: int
    released_rows: int
    releasing_buckets: int

    def places(self, clip: FlacClip) -> int:
        return self.pending[clip.digest] + self.released[clip.digest]


def released_clip_bytes(store: BlobStore, prefix: str = "releases/") -> list[bytes]:
    """Every clip readable under ``prefix``: the members of every release shard, and any
    loose FLAC object."""
    clips = []
    for key in store.list(prefix):
        if key.endswith(".tar"):
            clips.extend(data for _name, data in shard_members(store.get(key)))
        elif key.endswith(".flac"):
            clips.append(store.get(key))
    return clips


def take_census(database: Database, store: BlobStore) -> Census:
    # Pending clips are sealed: the census opens each with its bucket's key.
    pending = Counter(
        hashlib.sha256(data).hexdigest()
        for data in opened_pending_clips(database, store).values()
        if data is not None
    )
    released = Counter(hashlib.sha256(data).hexdigest() for data in released_clip_bytes(store))
    with database.session() as session:
        pending_rows = session.execute(
            sa.select(sa.func.count()).select_from(PendingClip)
        ).scalar_one()
        released_rows = session.execute(
            sa.select(sa.func.count()).select_from(ReleasedClip)
        ).scalar_one()
        releasing = session.execute(
            sa.select(sa.func.count()).select_from(Bucket).where(Bucket.state == "releasing")
        ).scalar_one()
    return Census(pending, released, pending_rows, released_rows, releasing)


def assert_each_released_once(census: Census, clips: list[FlacClip]) -> None:
    """Every clip is in the release prefix exactly once, and nothing is left pending."""
    for clip in clips:
        assert census.released[clip.digest] == 1, clip.name
        assert census.pending[clip.digest] == 0, clip.name
    assert census.pending_rows == 0
    assert census.releasing_buckets == 0
    assert census.released_rows == sum(census.released.values())


def release_audit_entries(database: Database) -> list[dict[str, object]]:
    """The bodies of the audit log's release entries, after checking the chain."""
    with database.session() as session:
        assert verify_chain(session).ok
        return [
            json.loads(body)
            for body in session.execute(
                sa.select(AuditEntry.body).where(AuditEntry.kind == "release")
            ).scalars()
        ]


def audit_log(database: Database) -> list[tuple[str, dict[str, object]]]:
    """Every audit entry as (kind, body), in chain order, after checking the chain."""
    with database.session() as session:
        assert verify_chain(session).ok
        return [
            (kind, json.loads(body))
            for kind, body in session.execute(
                sa.select(AuditEntry.kind, AuditEntry.body).order_by(AuditEntry.seq)
            ).all()
        ]


def release_now(app: FastAPI) -> CycleReport:
    """One release cycle of the app's service, as its scheduler would run it."""
    return run_release_cycle(
        database=app.state.database,
        keys=keys_for(app.state.database),
        store=app.state.store,
        policy=app.state.policy,
        interval_s=3600,
    )


def write_policy(folder: Path, *, k: int) -> Path:
    """The demo policy file with another ``k``, written to ``folder`` as ``policy.toml``."""
    text = (POLICY_DIR / "demo.toml").read_text(encoding="utf-8")
    assert "k = 5\n" in text
    path = folder / "policy.toml"
    path.write_text(text.replace("k = 5\n", f"k = {k}\n"), encoding="utf-8")
    return path


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
