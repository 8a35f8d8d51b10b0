"""P4 against a copy of the disk: no released clip can be joined to pending-side residue.

Storage keeps arrival order whatever the service does (SQLite WAL frames and cell order,
PostgreSQL ``ctid``/``xmin``, dead tuples and ``pg_wal``, object-store ETags and creation times,
file times and inode numbers). The defence is that nothing pending equals or determines anything
a release publishes: it is all sealed under the bucket's memory-only key. Each test seeds a
bucket through the service's own pending path, copies every file the service wrote before,
during and after the release, and looks in each copy for every released clip's join keys
(``tests.ingest.joins``). Each runs the same attack against a double that stores plaintext,
to show that the attack finds what sealing hides.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import sql

from aggregate.jobs import run_release_cycle
from chorus.devservers import SeaweedServer
from chorus.devservers_postgres import EmbeddedPostgres, _installed_binaries
from core.db import Database
from core.settings import Settings
from core.storage import BlobStore
from ingest.audio import sanitize_audio
from ingest.service import audio_limits
from policies.policy import Policy
from tests.ingest.joins import (
    copy_of_files,
    joined_clips,
    plaintext_sealing,
    released_clips,
)
from tests.keys import keys_for
from tests.pending import seed_sanitized

# Five speakers, one clip each: a demo-policy bucket (k = 5).
WAVS = ("0_george_1.wav", "1_jackson_5.wav", "5_lucas_0.wav", "0_nicolas_3.wav", "5_theo_7.wav")
EXERCISE = "digit-7"

Copier = Callable[[], dict[str, bytes]]


def _seed_and_release(
    database: Database, store: BlobStore, policy: Policy, wav_dir: Path, copy: Copier
) -> tuple[dict[str, dict[str, bytes]], dict[str, Any]]:
    """Seed one bucket, release it; the attacker's copies before, during and after."""
    database.upgrade()
    for index, name in enumerate(WAVS):
        clip = sanitize_audio((wav_dir / name).read_bytes(), audio_limits(policy))
        seed_sanitized(
            database, store, exercise_id=EXERCISE, learner_id=f"learner-{index}", clip=clip
        )
    copies = {"before": copy()}

    def during(step: str) -> None:
        if step in ("planned", "copied"):
            copies[f"during ({step})"] = copy()

    report = run_release_cycle(
        database=database,
        store=store,
        keys=keys_for(database),
        policy=policy,
        interval_s=1,
        checkpoint=during,
    )
    assert [r.clip_count for r in report.released] == [len(WAVS)]
    copies["after"] = copy()
    (manifest_key,) = [k for k in store.list("releases/") if k.endswith("manifest.json")]
    return copies, json.loads(store.get(manifest_key))


def _joined(
    copies: dict[str, dict[str, bytes]], store: BlobStore, manifest: dict[str, Any]
) -> dict[str, set[str]]:
    clips = released_clips(store.get, manifest)
    assert len(clips) == len(WAVS)
    return {
        when: set(joined_clips(copy, clips, release_rows=when != "before"))
        for when, copy in copies.items()
    }


# --- SQLite and the file store (the embedded default) ---------------------------------------


def _embedded(app: FastAPI, settings: Settings, fsdd_dir: Path, root: Path) -> dict[str, set[str]]:
    copies, manifest = _seed_and_release(
        app.state.database,
        app.state.store,
        app.state.policy,
        fsdd_dir,
        lambda: copy_of_files(root),
    )
    return _joined(copies, app.state.store, manifest)


def test_a_copy_of_sqlite_and_the_file_store_joins_no_released_clip(
    app: FastAPI, settings: Settings, fsdd_dir: Path, tmp_path: Path
) -> None:
    joined = _embedded(app, settings, fsdd_dir, tmp_path)
    assert set(joined) == {"before", "during (planned)", "during (copied)", "after"}
    assert joined == {when: set() for when in joined}


def test_the_attack_joins_plaintext_pending_clips_on_sqlite(
    app: FastAPI,
    settings: Settings,
    fsdd_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with plaintext_sealing(monkeypatch):
        joined = _embedded(app, settings, fsdd_dir, tmp_path)
    # Pending objects and rows in the clear: every clip is found while it waits.
    assert len(joined["before"]) == len(WAVS)
    assert len(joined["during (planned)"]) == len(WAVS)


# --- PostgreSQL: relation files, dead tuples, pg_wal and pg_dump -------------------------------

DATABASE = "chorus_join"


@pytest.fixture
def postgres() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as server:
        with psycopg.connect(server.admin_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE DATABASE {} STRATEGY = FILE_COPY").format(sql.Identifier(DATABASE))
            )
        yield server


def _postgres_copy(server: EmbeddedPostgres, blobs: Path) -> Copier:
    url = f"postgresql://postgres@127.0.0.1:{server.port}/{DATABASE}"
    assert server.directory is not None
    data = server.directory / "data"

    def copy() -> dict[str, bytes]:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CHECKPOINT")
        dump = subprocess.run(
            [str(_installed_binaries() / "pg_dump"), "--no-owner", url],
            capture_output=True,
            check=True,
        ).stdout
        return {
            **{f"pg/{name}": value for name, value in copy_of_files(data).items()},
            **{f"blobs/{name}": value for name, value in copy_of_files(blobs).items()},
            "pg_dump.sql": dump,
        }

    return copy


def _on_postgres(
    server: EmbeddedPostgres, make_settings: Callable[..., Settings], fsdd_dir: Path, tmp_path: Path
) -> dict[str, set[str]]:
    from chorus.app import create_app

    settings = make_settings(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{DATABASE}"
    )
    app = create_app(settings)
    try:
        copies, manifest = _seed_and_release(
            app.state.database,
            app.state.store,
            app.state.policy,
            fsdd_dir,
            _postgres_copy(server, tmp_path / "blobs"),
        )
        return _joined(copies, app.state.store, manifest)
    finally:
        app.state.database.dispose()


@pytest.mark.postgres
def test_a_copy_of_the_postgres_server_joins_no_released_clip(
    postgres: EmbeddedPostgres,
    make_settings: Callable[..., Settings],
    fsdd_dir: Path,
    tmp_path: Path,
) -> None:
    joined = _on_postgres(postgres, make_settings, fsdd_dir, tmp_path)
    assert joined == {when: set() for when in joined}


@pytest.mark.postgres
def test_the_attack_joins_plaintext_pending_clips_on_postgres(
    postgres: EmbeddedPostgres,
    make_settings: Callable[..., Settings],
    fsdd_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with plaintext_sealing(monkeypatch):
        joined = _on_postgres(postgres, make_settings, fsdd_dir, tmp_path)
    assert len(joined["before"]) == len(WAVS)
    assert len(joined["during (planned)"]) == len(WAVS)


# --- SeaweedFS: the filer's metadata (ETags) and the volumes ---------------------------------


def _etags(server: SeaweedServer, bucket: str) -> bytes:
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )
    listing = client.list_objects_v2(Bucket=bucket, Prefix="pending/")
    return b"\n".join(item["ETag"].strip('"').encode() for item in listing.get("Contents", []))


def _on_seaweed(
    make_settings: Callable[..., Settings], fsdd_dir: Path, tmp_path: Path
) -> dict[str, set[str]]:
    from chorus.app import create_app

    with SeaweedServer(data_dir=tmp_path / "seaweed") as server:
        bucket = "chorus-join"
        settings = make_settings(storage_url=server.storage_url(bucket))
        app = create_app(settings)
        store = app.state.store

        def copy() -> dict[str, bytes]:
            # Once a release has stored its shards, the volumes hold released audio by right:
            # from then on the attacker's join keys are sought in the filer's metadata and the
            # ETags (the volumes, before it, hold only pending objects).
            released = bool(list(store.list("releases/")))
            skip = ("releases", ".dat", ".idx") if released else ("releases",)
            files = {
                name: value
                for name, value in copy_of_files(server.data_dir).items()
                if not name.endswith(skip)
            }
            volumes = {f"seaweed/{name}": value for name, value in files.items()}
            return {**volumes, "etags": _etags(server, bucket)}

        try:
            copies, manifest = _seed_and_release(
                app.state.database, store, app.state.policy, fsdd_dir, copy
            )
            return _joined(copies, store, manifest)
        finally:
            app.state.database.dispose()


@pytest.mark.s3
def test_a_copy_of_seaweedfs_joins_no_released_clip(
    make_settings: Callable[..., Settings], fsdd_dir: Path, tmp_path: Path
) -> None:
    joined = _on_seaweed(make_settings, fsdd_dir, tmp_path)
    assert joined == {when: set() for when in joined}


@pytest.mark.s3
def test_the_attack_joins_plaintext_pending_objects_on_seaweedfs(
    make_settings: Callable[..., Settings],
    fsdd_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with plaintext_sealing(monkeypatch):
        joined = _on_seaweed(make_settings, fsdd_dir, tmp_path)
    assert len(joined["before"]) == len(WAVS)
