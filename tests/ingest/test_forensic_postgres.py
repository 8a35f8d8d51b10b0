"""The forensic attack of ``test_forensic`` against PostgreSQL: its data directory and a dump.

The service runs on a PostgreSQL server of the test's own, so the attacker's copy is the whole
server: relation files with their dead tuples, the WAL, and ``pg_dump`` of the database. After
real uploads, a withdrawal and a release (which vacuums the clip tables), nothing in it may
serve as an HMAC key that links a learner id to a stored value. The attack is shown not to be
blind in the same run: a key planted in a table afterwards is found and linked.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg import sql

from chorus.devservers_postgres import EmbeddedPostgres, _installed_binaries
from core.settings import Settings
from tests.ingest.forensics import (
    LEARNERS,
    assert_release_unlinked,
    hex_keys,
    hex_strings,
    hmac_hex,
    linked_learners,
    open_bucket_key,
    random_looking_windows,
    upload_release_and_withdraw,
)
from tests.ingest.uploads import Mint, Upload

pytestmark = pytest.mark.postgres
DATABASE = "chorus_forensic"
PLANTED_KEY = bytes(range(100, 132))


@dataclass
class Server:
    postgres: EmbeddedPostgres
    before: dict[Path, bytes] = field(default_factory=dict)  # files before the service ran

    @property
    def data(self) -> Path:
        assert self.postgres.directory is not None
        return self.postgres.directory / "data"


@pytest.fixture
def server() -> Iterator[Server]:
    with EmbeddedPostgres() as postgres:
        # FILE_COPY: the new database's files are copied, not written through the WAL, so the
        # WAL holds what the service did and little else.
        with psycopg.connect(postgres.admin_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE DATABASE {} STRATEGY = FILE_COPY").format(sql.Identifier(DATABASE))
            )
            connection.execute("CHECKPOINT")
        server = Server(postgres)
        server.before = {path: path.read_bytes() for path in _row_files(server)}
        yield server


@pytest.fixture
def settings(make_settings: Callable[..., Settings], server: Server) -> Settings:
    return make_settings(database_url=_url(server, driver="postgresql+psycopg"))


def _url(server: Server, *, driver: str = "postgresql") -> str:
    return f"{driver}://postgres@127.0.0.1:{server.postgres.port}/{DATABASE}"


def _sql(server: Server, statement: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(_url(server), autocommit=True) as connection:
        cursor = connection.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


def _dump(server: Server) -> bytes:
    pg_dump = _installed_binaries() / "pg_dump"
    return subprocess.run(
        [str(pg_dump), "--no-owner", _url(server)], capture_output=True, check=True
    ).stdout


def _row_files(server: Server) -> list[Path]:
    """The database's relation files, the shared catalogs and the WAL."""
    data = server.data
    ((oid,),) = _sql(server, "SELECT oid FROM pg_database WHERE datname = %s", DATABASE)
    folders = [data / "base" / str(oid), data / "global", data / "pg_wal"]
    return sorted(p for folder in folders for p in folder.rglob("*") if p.is_file())


def _linked(server: Server, tags: set[str]) -> tuple[list[str], list[str]]:
    """Learners linked by secrets in the dump, and by secrets in the server's files."""
    dump = _dump(server)
    files = {path: path.read_bytes() for path in _row_files(server)}
    targets = tags | hex_strings(dump)
    for data in files.values():
        targets |= hex_strings(data)

    def in_files() -> Iterator[bytes]:
        for path, data in files.items():
            yield from hex_keys(data)
            yield from random_looking_windows(data, before=server.before.get(path, b""))

    return (
        linked_learners(hex_keys(dump), targets, LEARNERS),
        linked_learners(in_files(), targets, LEARNERS),
    )


def test_a_copy_of_the_postgres_server_links_no_clip_to_a_learner(
    server: Server,
    app: FastAPI,
    client: TestClient,
    catalog: list[str],
    upload: Upload,
    mint: Mint,
    fsdd_dir: Path,
) -> None:
    scenario = upload_release_and_withdraw(app, client, upload, mint, fsdd_dir)
    _sql(server, "CHECKPOINT")  # what the WAL holds is in the relation files too

    tags = {str(tag) for (tag,) in _sql(server, "SELECT contributor_tag FROM pending_clips")}
    assert len(tags) == 4  # the pending exercise's four learners (below k) are still tagged
    real_key = open_bucket_key(app)  # positive control: the key in memory links them
    assert {hmac_hex(real_key, learner) for learner in LEARNERS[:4]} == tags

    # A key written to a table, with a value it links, is found: the attack reads the right
    # files. Nothing else may link.
    _sql(server, "CREATE TABLE planted (k bytea, tag text)")
    _sql(
        server,
        "INSERT INTO planted VALUES (%s, %s)",
        PLANTED_KEY,
        hmac_hex(PLANTED_KEY, "learner-002"),
    )
    _sql(server, "CHECKPOINT")
    in_dump, in_files = _linked(server, tags)
    assert in_dump == ["learner-002"]
    assert in_files == ["learner-002"]

    assert_release_unlinked(scenario)

    # The server's files are its own account's alone (its socket is reached through them).
    data = server.data
    for path in [data, *data.rglob("*")]:
        status = path.lstat()
        if stat.S_ISSOCK(status.st_mode):
            continue
        mode = stat.S_IMODE(status.st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(data)} has mode {oct(mode)}"
