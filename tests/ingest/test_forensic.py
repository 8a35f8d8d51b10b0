"""An attacker with a copy of every file the service wrote, and a list of learner ids (P3, P4).

Real learners upload through the API, one withdraws, a release runs, and a second exercise stays
pending; then, with the service still running, the data folder is copied as an attacker would.
The copy must hold no secret that links a learner id to a stored value: every 32-byte window of
the database files and every hex string anywhere is tried as an HMAC key over every learner id
against every stored tag. Released names and order must not be derivable from pending rows, and
no file may be readable by group or others. ``test_forensic_postgres`` does the same against a
PostgreSQL server's data directory and a dump.
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.ingest.forensics import (
    LEARNERS,
    assert_release_unlinked,
    every_window,
    hex_keys,
    hex_strings,
    hmac_hex,
    linked_learners,
    open_bucket_key,
    upload_release_and_withdraw,
)
from tests.ingest.uploads import Mint, Upload


def _candidate_keys(folder: Path) -> Iterator[bytes]:
    """Every 32-byte window of the database files; every 64-hex-digit string of any file."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name.startswith("chorus.db"):
            yield from every_window(data)
        yield from hex_keys(data)


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
    targets = set(tags)
    for path in folder.rglob("*"):
        if path.is_file():
            targets |= hex_strings(path.read_bytes())
    return linked_learners(_candidate_keys(folder), targets, learners)


def test_a_copy_of_the_disk_links_no_clip_to_a_learner(
    tmp_path: Path,
    app: FastAPI,
    client: TestClient,
    catalog: list[str],
    upload: Upload,
    mint: Mint,
    fsdd_dir: Path,
) -> None:
    scenario = upload_release_and_withdraw(app, client, upload, mint, fsdd_dir)

    # The attacker's copy, taken while the service runs.
    copy = tmp_path.parent / f"{tmp_path.name}-copy"
    shutil.copytree(tmp_path, copy, ignore=shutil.ignore_patterns(copy.name))
    tags = _stored_tags(copy / "chorus.db")
    assert len(tags) == 4  # the pending exercise's four learners (below k) are still tagged

    # Positive control: the real key of the pending bucket (in memory, not in the copy) links.
    real_key = open_bucket_key(app)
    assert {hmac_hex(real_key, learner) for learner in LEARNERS[:4]} == tags

    assert _linkable(copy, tags, LEARNERS) == []
    assert_release_unlinked(scenario)

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
            sa.text("INSERT INTO pending_clips VALUES (:t)"), {"t": hmac_hex(key, "learner-002")}
        )
    engine.dispose()
    tags = _stored_tags(database_file)
    assert _linkable(tmp_path, tags, LEARNERS) == ["learner-002"]
