"""SQLite's writers take turns across threads and processes (``core.db.SqliteWriterQueue``)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.db import Database, SqliteWriterQueue
from core.errors import DatabaseUnavailable

WRITES_PER_WRITER = 40


def _count_up(url: str, writer: int) -> None:
    """Read-then-write transactions (the pattern that fails without a writer queue)."""
    database = Database(url)
    try:
        for _ in range(WRITES_PER_WRITER):
            with database.connection(write=True) as connection:
                value = connection.execute(sa.text("SELECT value FROM counter")).scalar_one()
                connection.execute(sa.text("UPDATE counter SET value = :v"), {"v": value + 1})
                connection.execute(sa.text("INSERT INTO turns (writer) VALUES (:w)"), {"w": writer})
    finally:
        database.dispose()


@pytest.fixture
def counter_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'counter.db'}"
    database = Database(url)
    with database.connection(write=True) as connection:
        connection.execute(sa.text("CREATE TABLE counter (value INTEGER NOT NULL)"))
        connection.execute(sa.text("INSERT INTO counter VALUES (0)"))
        connection.execute(sa.text("CREATE TABLE turns (writer INTEGER NOT NULL)"))
    database.dispose()
    return url


def test_processes_and_threads_write_in_turn(counter_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_count_up, args=(counter_url, n)) for n in range(3)]
    threads = [threading.Thread(target=_count_up, args=(counter_url, 10 + n)) for n in range(3)]
    for process in processes:
        process.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    database = Database(counter_url)
    with database.connection() as connection:
        # No lost update: every read-then-write saw the previous writer's commit.
        assert connection.execute(sa.text("SELECT value FROM counter")).scalar_one() == 240
        per_writer: dict[int, int] = dict(
            connection.execute(sa.text("SELECT writer, count(*) FROM turns GROUP BY writer")).all()
        )
    database.dispose()
    assert per_writer == {n: WRITES_PER_WRITER for n in (0, 1, 2, 10, 11, 12)}


def _hold_turn_forever(url: str, ready: multiprocessing.synchronize.Event) -> None:
    database = Database(url)
    with database.connection(write=True):
        ready.set()
        time.sleep(600)


def test_a_writer_that_dies_releases_its_turn(counter_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_turn_forever, args=(counter_url, ready))
    holder.start()
    try:
        assert ready.wait(30)
        queue = SqliteWriterQueue(counter_url.removeprefix("sqlite:///"))
        with pytest.raises(DatabaseUnavailable), queue.turn(timeout_s=0.3):
            pass  # pragma: no cover - the holder has the turn
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        started = time.monotonic()
        with queue.turn(timeout_s=5):
            pass
        assert time.monotonic() - started < 1
        queue.close()
    finally:
        holder.kill()
        holder.join(10)
    _count_up(counter_url, 0)  # the database itself is usable: SQLite rolled the holder back


def test_a_writer_in_a_tight_loop_does_not_starve_a_waiting_one() -> None:
    queue = SqliteWriterQueue(None)
    stop = threading.Event()
    turns = 0

    def hog() -> None:
        nonlocal turns
        while not stop.is_set():
            with queue.turn(timeout_s=5):
                turns += 1

    hogger = threading.Thread(target=hog)
    hogger.start()
    try:
        while turns < 100:
            time.sleep(0.001)
        started = time.monotonic()
        for _ in range(20):
            with queue.turn(timeout_s=2):
                pass
        assert time.monotonic() - started < 2
    finally:
        stop.set()
        hogger.join(10)


def test_a_waiter_that_gives_up_does_not_block_the_ones_behind_it() -> None:
    queue = SqliteWriterQueue(None)
    holder_in, release_holder = threading.Event(), threading.Event()

    def hold() -> None:
        with queue.turn(timeout_s=1):
            holder_in.set()
            release_holder.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holder_in.wait(10)
    with pytest.raises(DatabaseUnavailable), queue.turn(timeout_s=0.1):
        pass  # pragma: no cover - the holder has the turn
    got_turn = threading.Event()

    def wait_behind() -> None:
        with queue.turn(timeout_s=5):
            got_turn.set()

    behind = threading.Thread(target=wait_behind)
    behind.start()
    release_holder.set()
    assert got_turn.wait(5)  # the abandoned ticket was skipped
    holder.join(10)
    behind.join(10)


# --- residue (P3, P4) ---------------------------------------------------------------------


def _scratch(database: Database) -> None:
    with database.connection(write=True) as connection:
        connection.exec_driver_sql("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)")


def test_purge_residue_leaves_no_deleted_row_in_sqlite_files(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'chorus.db'}")
    _scratch(database)
    secret = "deleted-" + os.urandom(12).hex()
    with database.connection(write=True) as connection:
        connection.exec_driver_sql("INSERT INTO notes VALUES ('kept', 'still here')")
        connection.execute(sa.text("INSERT INTO notes VALUES (:s, :s)"), {"s": secret})
    assert database.purge_residue(["notes"]) is True  # the row now lives in the file itself
    with database.connection(write=True) as connection:
        connection.execute(sa.text("DELETE FROM notes WHERE id = :s"), {"s": secret})
    assert database.purge_residue(["notes"]) is True

    files = [tmp_path / "chorus.db", tmp_path / "chorus.db-wal"]
    assert (tmp_path / "chorus.db-wal").stat().st_size == 0
    contents = b"".join(path.read_bytes() for path in files)
    assert secret.encode() not in contents
    assert b"still here" in contents
    database.dispose()


def test_purge_residue_waits_for_a_reader_then_empties_the_wal(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'chorus.db'}")
    _scratch(database)
    other = Database(database.url)
    with database.connection(write=True) as connection:
        connection.exec_driver_sql("INSERT INTO notes VALUES ('a', 'b')")
    reading = threading.Event()

    def read_for_a_while() -> None:
        with other.connection() as connection:
            connection.exec_driver_sql("SELECT count(*) FROM notes").scalar_one()
            reading.set()
            time.sleep(0.4)

    reader = threading.Thread(target=read_for_a_while)
    reader.start()
    reading.wait(5)
    started = time.monotonic()
    assert database.purge_residue(["notes"]) is True
    reader.join()
    assert time.monotonic() - started < 5
    assert (tmp_path / "chorus.db-wal").stat().st_size == 0
    other.dispose()
    database.dispose()


def test_sqlite_files_are_private_even_under_an_open_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        database = Database(f"sqlite:///{tmp_path / 'var' / 'chorus.db'}")
        _scratch(database)
        with database.sidecar_lock("release") as got:
            assert got
    finally:
        os.umask(old)
    folder = tmp_path / "var"
    assert folder.stat().st_mode & 0o777 == 0o700
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert {"chorus.db", "chorus.db-wal", "chorus.db-shm", "chorus.db-writer.lock"} <= set(modes)
    assert set(modes.values()) == {0o600}
    assert database.secure_delete_enabled() is True
    database.dispose()


def test_an_existing_open_database_file_is_narrowed_to_0600(tmp_path: Path) -> None:
    path = tmp_path / "chorus.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    database = Database(f"sqlite:///{path}")
    database.check()
    assert path.stat().st_mode & 0o777 == 0o600
    database.dispose()


def test_tables_with_rowid_names_only_ordinary_tables(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'chorus.db'}")
    with database.connection(write=True) as connection:
        connection.exec_driver_sql("CREATE TABLE ordered (id TEXT PRIMARY KEY)")
        connection.exec_driver_sql("CREATE TABLE unordered (id TEXT PRIMARY KEY) WITHOUT ROWID")
    assert database.tables_with_rowid(["ordered", "unordered", "absent"]) == ["ordered"]
    database.dispose()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_try_lock_admits_one_holder_and_lets_go_after_it(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'lock.db'}"
    )
    # Two handles, as two replicas (or a replica and a CLI run) would hold.
    first, second = Database(url), Database(url)
    try:
        with first.try_lock("chorus-test-lock") as held:
            assert held
            with second.try_lock("chorus-test-lock") as also:
                assert not also
            with second.try_lock("chorus-other-lock") as other:
                assert other
        with second.try_lock("chorus-test-lock") as after:
            assert after
    finally:
        first.dispose()
        second.dispose()
