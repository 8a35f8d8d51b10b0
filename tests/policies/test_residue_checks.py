"""The residue checks name open file modes, SQLite without secure_delete and rowid tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from chorus.audit import AUDIT_CHECKS
from core.db import Database
from core.storage import FileBlobStore
from policies.checks import run_checks
from policies.policy import load_policy

RESIDUE_CHECKS = tuple(
    check
    for check in AUDIT_CHECKS
    if check.name in {"file_modes", "sqlite_pragmas", "clip_table_rowid"}
)


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'chorus.db'}")
    with database.connection(write=True) as connection:
        connection.exec_driver_sql("CREATE TABLE buckets (id TEXT PRIMARY KEY) WITHOUT ROWID")
        connection.exec_driver_sql("CREATE TABLE pending_clips (id TEXT PRIMARY KEY) WITHOUT ROWID")
    return database


def _findings(database: Database, store: FileBlobStore) -> list[tuple[str, str | None]]:
    report = run_checks(RESIDUE_CHECKS, database=database, store=store, policy=load_policy("demo"))
    return [(finding.check, finding.subject) for finding in report.findings]


def test_residue_checks_follow_the_older_checks_in_the_report() -> None:
    names = [check.name for check in AUDIT_CHECKS]
    assert names.index("canaries") < names.index("file_modes")
    assert (
        names.index("file_modes") < names.index("sqlite_pragmas") < names.index("clip_table_rowid")
    )


def test_private_files_and_rowid_free_tables_are_clean(database: Database, tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put("pending/a", b"clip")
    assert _findings(database, store) == []


def test_open_files_and_folders_are_named(database: Database, tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put("pending/a", b"clip")
    (tmp_path / "blobs" / "pending" / "a").chmod(0o644)
    (tmp_path / "blobs" / "pending").chmod(0o750)
    (tmp_path / "chorus.db").chmod(0o640)
    assert sorted(_findings(database, store)) == [
        ("file_readable_by_others", str(tmp_path / "blobs" / "pending")),
        ("file_readable_by_others", str(tmp_path / "blobs" / "pending" / "a")),
        ("file_readable_by_others", str(tmp_path / "chorus.db")),
    ]


def test_a_table_with_a_rowid_is_named(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'chorus.db'}")
    with database.connection(write=True) as connection:
        connection.exec_driver_sql("CREATE TABLE buckets (id TEXT PRIMARY KEY) WITHOUT ROWID")
        connection.exec_driver_sql("CREATE TABLE pending_clips (id TEXT PRIMARY KEY)")
    store = FileBlobStore(tmp_path / "blobs")
    assert _findings(database, store) == [("clip_table_has_rowid", "pending_clips")]


def test_sqlite_without_secure_delete_is_named(database: Database, tmp_path: Path) -> None:
    # A deployment whose connections turn it off (some SQLite builds default to off).
    engine = sa.create_engine(database.url)

    def secure_delete_off(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA secure_delete=OFF")

    sa.event.listen(engine, "connect", secure_delete_off)
    database.engine = engine
    store = FileBlobStore(tmp_path / "blobs")
    assert _findings(database, store) == [("sqlite_secure_delete_off", None)]
