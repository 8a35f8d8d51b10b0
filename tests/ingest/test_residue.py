"""Deleted clips leave nothing behind in the files of the embedded default (P3, P4).

An attacker holding a copy of every file the service wrote finds neither the ids, contributor
tags nor object keys of withdrawn and released pending clips, and no file another local user
could read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aggregate.jobs import run_release_cycle
from aggregate.tables import PendingClip
from core.settings import Settings
from tests.ingest.uploads import Mint, Recording, Upload
from tests.keys import keys_for

pytestmark = pytest.mark.usefixtures("catalog")


def _pending_residue(app: FastAPI, bucket_exercises: set[str]) -> list[bytes]:
    """The id, contributor tag and object key of every pending clip of ``bucket_exercises``."""
    from aggregate.tables import Bucket

    with app.state.database.session() as session:
        rows = session.execute(
            sa.select(PendingClip.id, PendingClip.contributor_tag, PendingClip.object_key)
            .join(Bucket, Bucket.id == PendingClip.bucket_id)
            .where(Bucket.exercise_id.in_(bucket_exercises))
        ).all()
    return [value.encode() for row in rows for value in row]


def _database_files(settings: Settings) -> list[Path]:
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    return [database, *database.parent.glob(f"{database.name}-*")]


def test_withdrawn_and_released_clips_leave_no_residue_in_sqlite_files(
    app: FastAPI,
    client: TestClient,
    settings: Settings,
    wav_bytes: bytes,
    recording: Recording,
    upload: Upload,
    mint: Mint,
) -> None:
    leaving = mint("leaving")
    assert upload(leaving, wav_bytes, {"exercise_id": "digit-1"}).status_code == 201
    for learner in range(app.state.policy.k):  # digit-2 reaches k and is released
        token = mint(f"learner-{learner}")
        assert upload(token, recording(learner), {"exercise_id": "digit-2"}).status_code == 201
    assert upload(mint("waiting"), wav_bytes, {"exercise_id": "digit-3"}).status_code == 201
    gone = _pending_residue(app, {"digit-1", "digit-2"})
    kept = _pending_residue(app, {"digit-3"})
    assert len(gone) == 3 * (1 + app.state.policy.k)

    response = client.post(
        "/v1/consent/withdrawals", headers={"Authorization": f"Bearer {leaving}"}
    )
    assert response.json() == {"withdrawn": 1}
    report = run_release_cycle(
        database=app.state.database,
        keys=keys_for(app.state.database),
        store=app.state.store,
        policy=app.state.policy,
        interval_s=86400,
    )
    assert len(report.released) == 1

    database = Path(settings.database_url.removeprefix("sqlite:///"))
    wal = Path(f"{database}-wal")
    assert wal.exists()
    assert wal.stat().st_size == 0
    everything = b"".join(path.read_bytes() for path in _database_files(settings))
    assert [value for value in gone if value in everything] == []
    # Not vacuous: the clip that is still pending is plainly there.
    assert all(value in everything for value in kept)


def test_every_file_the_service_wrote_is_private(
    app: FastAPI,
    client: TestClient,
    settings: Settings,
    wav_bytes: bytes,
    recording: Recording,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], object],
) -> None:
    for learner in range(app.state.policy.k):
        assert upload(mint(f"learner-{learner}"), recording(learner)).status_code == 201
    run_release_cycle(
        database=app.state.database,
        keys=keys_for(app.state.database),
        store=app.state.store,
        policy=app.state.policy,
        interval_s=86400,
    )
    blobs = Path(settings.storage_url.removeprefix("file://"))
    written = [*_database_files(settings), blobs]
    for folder, folders, files in os.walk(blobs):
        written += [Path(folder) / name for name in folders + files]
    assert any("releases" in path.parts for path in written)
    modes = {str(path): oct(path.stat().st_mode & 0o777) for path in written}
    expected = {str(path): oct(0o700 if path.is_dir() else 0o600) for path in written}
    assert modes == expected
