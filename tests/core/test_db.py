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
