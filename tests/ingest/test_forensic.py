"""An attacker with a copy of every file the service wrote, and a list of learner ids (P3, P4).

Real learners upload through the API, one withdraws, a release runs, and a second exercise stays
pending; then, with the service still running, the data folder is copied as an attacker would.
The copy must hold no secret that links a learner id to a stored value: every 32-byte window of
the database files and every hex string anywhere is tried as an HMAC key over every learner id
against every stored tag. Released names and order must not be derivable from pending rows, and
no file may be readable by group or others.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import soundfile as sf
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aggregate.buckets import key_name
from aggregate.jobs import run_release_cycle
from aggregate.tables import PendingClip
from tests.ingest.conftest import Mint, Upload
from tests.keys import keys_for

RELEASED = "digit-3"
PENDING = "digit-5"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
_HEX_KEY = re.compile(rb"[0-9a-fA-F]{64}")


def _learners() -> list[str]:
    return [f"learner-{n:03d}" for n in range(7)]


def _long_take(wavs: list[Path], *, digit: str, speaker: str, skip: int) -> Path:
    """A take of ``digit`` by ``speaker`` long enough for the policy (≥ 0.4 s)."""
    takes = [
        w
        for w in wavs
        if w.name.startswith(f"{digit}_{speaker}_") and sf.info(str(w)).duration >= 0.4
    ]
    return takes[skip]


def _hmac_hex(key: bytes, learner_id: str) -> str:
    return hmac.new(key, learner_id.encode(), hashlib.sha256).hexdigest()


def _candidate_keys(folder: Path) -> Iterator[bytes]:
    """Every 32-byte window of the database files; every 64-hex-digit string of any file."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name.startswith("chorus.db"):
            for offset in range(0, max(len(data) - 31, 0)):
                yield data[offset : offset + 32]
        for match in _HEX_KEY.finditer(data):
            yield bytes.fromhex(match.group().decode())


def _stored_tags(database_file: Path) -> set[str]:
    engine = sa.create_engine(f"sqlite:///{database_file}")
    try:
        with engine.connect() as connection:
            return set(
                connection.execute(sa.text("SELECT contributor_tag FROM pending_clips")).scalars()
            )
    finally:
        engine.dispose()


def _linkable(folder: Path, tags: set[str], learners: list[str]) -> list[str]:
    """Learner ids some candidate key links to a stored tag (or to a hex string in the files)."""
    hex_strings = {
        m.group().decode().lower()
        for p in folder.rglob("*")
        if p.is_file()
        for m in _HEX_KEY.finditer(p.read_bytes())
    }
    targets = tags | hex_strings
    found = set()
    seen: set[bytes] = set()
    for key in _candidate_keys(folder):
        if key in seen:
            continue
        seen.add(key)
        for learner in learners:
            if _hmac_hex(key, learner) in targets:
                found.add(learner)
    return sorted(found)


def test_a_copy_of_the_disk_links_no_clip_to_a_learner(
    tmp_path: Path,
    app: FastAPI,
    client: TestClient,
    catalog: list[str],
    upload: Upload,
    mint: Mint,
    fsdd_dir: Path,
) -> None:
    learners = _learners()
    wavs = sorted(fsdd_dir.glob("*.wav"))
    for index, learner in enumerate(learners):
        token = mint(learner)
        for exercise in (RELEASED, PENDING) if index < 4 else (RELEASED,):
            digit = exercise.removeprefix("digit-")
            wav = _long_take(wavs, digit=digit, speaker=SPEAKERS[index % 6], skip=index // 6)
            response = upload(token, wav.read_bytes(), {"exercise_id": exercise})
            assert response.status_code == 201, response.text
        if index == 6:
            withdrawn = client.post(
                "/v1/consent/withdrawals", headers={"Authorization": f"Bearer {token}"}
            )
            assert withdrawn.json() == {"withdrawn": 1}

    database = app.state.database
    with database.session() as session:
        before = session.execute(
            sa.select(PendingClip.id, PendingClip.object_key, PendingClip.contributor_tag)
        ).all()
    pending_side = {value for row in before for value in row}
    pending_side |= {Path(row.object_key).stem for row in before}

    report = run_release_cycle(
        database=database,
        store=app.state.store,
        keys=keys_for(database),
        policy=app.state.policy,
        interval_s=1,
    )
    assert [r.exercise_id for r in report.released] == [RELEASED]
    assert report.released[0].contributor_count == 6

    # The attacker's copy, taken while the service runs.
    copy = tmp_path.parent / f"{tmp_path.name}-copy"
    shutil.copytree(tmp_path, copy, ignore=shutil.ignore_patterns(copy.name))
    tags = _stored_tags(copy / "chorus.db")
    assert len(tags) == 4  # the pending exercise's four learners (below k) are still tagged

    # Positive control: the real key of the pending bucket (in memory, not in the copy) links.
    with database.session() as session:
        (bucket_id,) = session.execute(
            sa.text("SELECT id FROM buckets WHERE state = 'open'")
        ).scalars()
    real_key = keys_for(database).get(key_name(bucket_id))
    assert real_key is not None
    assert {_hmac_hex(real_key, learner) for learner in learners[:4]} == tags

    assert _linkable(copy, tags, learners) == []

    # Released names and order come from a fresh random source, not from pending rows.
    (manifest_key,) = [k for k in app.state.store.list("releases/") if k.endswith("manifest.json")]
    manifest = json.loads(app.state.store.get(manifest_key))
    released_ids = {clip["clip_id"] for clip in manifest["clips"]}
    assert len(released_ids) == 6
    assert not released_ids & pending_side
    assert not {manifest["release_id"]} & pending_side

    # Nothing the service wrote is readable by anyone but its owner.
    for path in [tmp_path, *tmp_path.rglob("*")]:
        if copy in path.parents or path == copy:
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(tmp_path.parent)} has mode {oct(mode)}"


def test_the_detector_finds_a_key_written_to_disk(tmp_path: Path) -> None:
    """The attack above is not blind: a key stored in a database file is found and linked."""
    key = bytes(range(32))
    database_file = tmp_path / "chorus.db"
    engine = sa.create_engine(f"sqlite:///{database_file}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE pending_clips (contributor_tag TEXT)"))
        connection.execute(sa.text("CREATE TABLE leaked (k BLOB)"))
        connection.execute(sa.text("INSERT INTO leaked VALUES (:k)"), {"k": key})
        connection.execute(
            sa.text("INSERT INTO pending_clips VALUES (:t)"), {"t": _hmac_hex(key, "learner-002")}
        )
    engine.dispose()
    tags = _stored_tags(database_file)
    assert _linkable(tmp_path, tags, _learners()) == ["learner-002"]
