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
                connection.execute(
                    sa.text("INSERT INTO turns (writer) VALUES (:w)"), {"w": writer}
                )
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
    for worker in [*processes, *threads]:
        worker.start()
    for thread in threads:
        thread.join(60)
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    database = Database(counter_url)
    with database.connection() as connection:
        # No lost update: every read-then-write saw the previous writer's commit.
        assert connection.execute(sa.text("SELECT value FROM counter")).scalar_one() == 240
        per_writer = dict(
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
