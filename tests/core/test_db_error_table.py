"""Every database error has one answer (``core.db_errors``), and real errors get it.

The table is complete: it names every SQLSTATE class PostgreSQL has (as psycopg 3 knows them)
and every primary result code of Python's ``sqlite3``, and each of its entries is reached by an
error carrying that code. Real errors of both databases, met inside a transaction or escaping to
a route, answer what docs/clients.md promises: 503 ``database_unavailable`` with Retry-After for
an outage or a lock, 507 ``storage_full`` for a full disk, 409 ``conflict`` for a lost race,
422 ``unstorable_input`` for a value the database refused, and 500 for the service's own bug.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa_exc

from core import db_errors
from core.db import Database, limit_lock_wait, translate_db_errors, with_row_lock
from core.db_errors import (
    BUSY,
    CONFLICT,
    FAULT,
    FULL,
    SQLITE_EXTENDED_CODES,
    SQLITE_PRIMARY_CODES,
    SQLSTATE_CLASSES,
    SQLSTATES,
    UNAVAILABLE,
    UNSTORABLE,
    DatabaseFailure,
    classify,
)
from core.errors import (
    Conflict,
    DatabaseBusy,
    DatabaseUnavailable,
    StorageFull,
    UnstorableInput,
)
from core.handlers import install_error_handlers

# sqlite3's SQLITE_ names that are no result codes: the authorizer's actions and answers
# (sqlite.org/c3ref/c_alter_table.html, c_deny.html); the limits are SQLITE_LIMIT_*.
_AUTHORIZER = """
    CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER
    CREATE_TEMP_VIEW CREATE_TRIGGER CREATE_VIEW CREATE_VTABLE DELETE DROP_INDEX DROP_TABLE
    DROP_TEMP_INDEX DROP_TEMP_TABLE DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER DROP_VIEW
    DROP_VTABLE INSERT PRAGMA READ SELECT TRANSACTION UPDATE ATTACH DETACH ALTER_TABLE
    REINDEX ANALYZE FUNCTION SAVEPOINT RECURSIVE COPY DENY IGNORE
"""
AUTHORIZER_CODES = frozenset(f"SQLITE_{name}" for name in _AUTHORIZER.split())
# Classes that hold no error (success and warnings): psycopg has no exception for them.
NEVER_RAISED_CLASSES = frozenset({"00", "01"})


def psycopg_sqlstates() -> dict[str, str]:
    """SQLSTATE → psycopg's exception name, for every code psycopg 3 can raise."""
    return {
        cls.sqlstate: name
        for name, cls in vars(psycopg.errors).items()
        if isinstance(cls, type) and issubclass(cls, psycopg.Error) and cls.sqlstate
    }


def sqlite_result_codes() -> dict[str, int]:
    """Every result code (primary and extended) that Python's sqlite3 names."""
    return {
        name: value
        for name, value in vars(sqlite3).items()
        if name.startswith("SQLITE_")
        and isinstance(value, int)
        and name not in AUTHORIZER_CODES
        and not name.startswith("SQLITE_LIMIT_")
    }


def postgres_error(sqlstate: str) -> sa_exc.DBAPIError:
    """What SQLAlchemy raises for a psycopg error of ``sqlstate``."""
    orig = psycopg.errors.lookup(sqlstate)("a message that may quote a value")
    return _wrapped(orig, psycopg.Error)


def sqlite_error(code: int) -> sa_exc.DBAPIError:
    """What SQLAlchemy raises for a sqlite3 error of result ``code``."""
    orig = sqlite3.OperationalError("a message that may quote a value")
    orig.sqlite_errorcode = code
    return _wrapped(orig, sqlite3.Error)


def _wrapped(orig: Exception, driver_error: type[Exception]) -> sa_exc.DBAPIError:
    error = sa_exc.DBAPIError.instance("SELECT 1", None, orig, driver_error)
    assert isinstance(error, sa_exc.DBAPIError)
    return error


# --- the table is complete ------------------------------------------------------------------


def test_every_sqlstate_class_postgresql_has_an_entry() -> None:
    classes = {code[:2] for code in psycopg_sqlstates()}
    assert classes - set(SQLSTATE_CLASSES) == set(), "SQLSTATE classes without an answer"
    assert set(SQLSTATE_CLASSES) - classes <= NEVER_RAISED_CLASSES, "classes no one raises"


def test_every_sqlstate_the_table_names_is_a_real_one() -> None:
    assert set(SQLSTATES) - set(psycopg_sqlstates()) == set()


def test_every_sqlite_primary_result_code_has_an_entry() -> None:
    primary = {value for value in sqlite_result_codes().values() if value < 256}
    assert primary == set(SQLITE_PRIMARY_CODES)


def test_every_sqlite_extended_code_the_table_names_is_a_real_one() -> None:
    extended = {value for value in sqlite_result_codes().values() if value >= 256}
    assert set(SQLITE_EXTENDED_CODES) <= extended


def test_every_sqlite_extended_code_falls_under_a_primary_one() -> None:
    for name, value in sqlite_result_codes().items():
        assert value & 0xFF in SQLITE_PRIMARY_CODES, name


@pytest.mark.parametrize("sqlstate", sorted(psycopg_sqlstates()))
def test_every_sqlstate_is_classified(sqlstate: str) -> None:
    failure = classify(postgres_error(sqlstate))
    assert failure is (SQLSTATES.get(sqlstate) or SQLSTATE_CLASSES[sqlstate[:2]])


@pytest.mark.parametrize("name", sorted(sqlite_result_codes()))
def test_every_sqlite_result_code_is_classified(name: str) -> None:
    code = sqlite_result_codes()[name]
    failure = classify(sqlite_error(code))
    assert failure is (SQLITE_EXTENDED_CODES.get(code) or SQLITE_PRIMARY_CODES[code & 0xFF])


def test_every_answer_of_the_table_is_reached() -> None:
    answers = {value for value in vars(db_errors).values() if isinstance(value, DatabaseFailure)}
    used = {
        *SQLSTATE_CLASSES.values(),
        *SQLSTATES.values(),
        *SQLITE_PRIMARY_CODES.values(),
        *SQLITE_EXTENDED_CODES.values(),
    }
    assert answers == used


# --- what each failure answers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "status", "code", "retry_after_s"),
    [
        (UNAVAILABLE, 503, "database_unavailable", 5),
        (BUSY, 503, "database_unavailable", 5),
        (FULL, 507, "storage_full", 300),
        (CONFLICT, 409, "conflict", None),
        (UNSTORABLE, 422, "unstorable_input", None),
        (FAULT, 500, "internal_error", None),
    ],
)
def test_each_failure_answers_a_code_clients_know(
    failure: DatabaseFailure, status: int, code: str, retry_after_s: int | None
) -> None:
    assert (failure.status, failure.code, failure.retry_after_s) == (status, code, retry_after_s)
    assert failure.retryable is (retry_after_s is not None)
    root = Path(__file__).resolve().parents[2]
    documented = (root / "README.md").read_text() + (root / "docs" / "clients.md").read_text()
    assert f"`{code}`" in documented


@pytest.mark.parametrize(
    ("sqlstate", "failure"),
    [
        ("08006", UNAVAILABLE),  # connection_failure
        ("08001", UNAVAILABLE),  # sqlclient_unable_to_establish_sqlconnection
        ("57P01", UNAVAILABLE),  # admin_shutdown
        ("57P02", UNAVAILABLE),  # crash_shutdown
        ("57P03", UNAVAILABLE),  # cannot_connect_now
        ("53000", UNAVAILABLE),  # insufficient_resources
        ("53200", UNAVAILABLE),  # out_of_memory
        ("53300", UNAVAILABLE),  # too_many_connections
        ("25006", UNAVAILABLE),  # read_only_sql_transaction
        ("40001", BUSY),  # serialization_failure
        ("40P01", BUSY),  # deadlock_detected
        ("55P03", BUSY),  # lock_not_available
        ("57014", BUSY),  # query_canceled
        ("53100", FULL),  # disk_full
        ("23505", CONFLICT),  # unique_violation
        ("23503", FAULT),  # foreign_key_violation
        ("22001", UNSTORABLE),  # string_data_right_truncation
        ("42P01", FAULT),  # undefined_table
        ("XX001", FAULT),  # data_corrupted
    ],
)
def test_postgresql_codes_answer_as_documented(sqlstate: str, failure: DatabaseFailure) -> None:
    assert classify(postgres_error(sqlstate)) is failure


@pytest.mark.parametrize(
    ("name", "failure"),
    [
        ("SQLITE_BUSY", BUSY),
        ("SQLITE_BUSY_SNAPSHOT", BUSY),
        ("SQLITE_LOCKED", BUSY),
        ("SQLITE_FULL", FULL),
        ("SQLITE_IOERR", UNAVAILABLE),
        ("SQLITE_IOERR_WRITE", UNAVAILABLE),
        ("SQLITE_IOERR_FSYNC", UNAVAILABLE),
        ("SQLITE_CANTOPEN", UNAVAILABLE),
        ("SQLITE_READONLY", UNAVAILABLE),
        ("SQLITE_CONSTRAINT_UNIQUE", CONFLICT),
        ("SQLITE_CONSTRAINT_PRIMARYKEY", CONFLICT),
        ("SQLITE_CONSTRAINT_NOTNULL", FAULT),
        ("SQLITE_TOOBIG", UNSTORABLE),
        ("SQLITE_CORRUPT", FAULT),
        ("SQLITE_NOTADB", FAULT),
        ("SQLITE_ERROR", FAULT),
    ],
)
def test_sqlite_codes_answer_as_documented(name: str, failure: DatabaseFailure) -> None:
    assert classify(sqlite_error(getattr(sqlite3, name))) is failure


def test_errors_without_a_code_are_judged_by_their_type() -> None:
    refused = psycopg.OperationalError("connection failed: Connection refused")
    assert refused.sqlstate is None
    assert classify(_wrapped(refused, psycopg.Error)) is UNAVAILABLE
    closed = psycopg.InterfaceError("the connection is closed")
    assert classify(_wrapped(closed, psycopg.Error)) is UNAVAILABLE
    assert classify(sa_exc.TimeoutError("QueuePool limit reached")) is BUSY
    assert classify(ValueError("not a database error")) is None


def test_a_dead_connection_is_unavailable_whatever_its_code() -> None:
    error = postgres_error("42P01")
    error.connection_invalidated = True
    assert classify(error) is UNAVAILABLE


# --- real errors, inside a transaction --------------------------------------------------------


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'errors.db'}")
    with database.session(write=True) as session:
        session.execute(sa.text("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)"))
    yield database
    database.dispose()


def test_a_lost_unique_race_is_a_conflict(sqlite_database: Database) -> None:
    with sqlite_database.session(write=True) as session:
        session.execute(sa.text("INSERT INTO notes VALUES ('a', 'first')"))
    with pytest.raises(Conflict) as raised, sqlite_database.session(write=True) as session:
        session.execute(sa.text("INSERT INTO notes VALUES ('a', 'second')"))
    assert "first" not in raised.value.detail
    assert "second" not in raised.value.detail


def test_a_full_sqlite_disk_is_storage_full(sqlite_database: Database) -> None:
    def insert_past_the_last_page() -> None:
        with sqlite_database.connection(write=True) as connection:
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
            connection.exec_driver_sql(f"PRAGMA max_page_count = {pages}")  # no room to grow
            connection.execute(
                sa.text("INSERT INTO notes VALUES ('big', :body)"), {"body": "x" * 10**5}
            )

    with pytest.raises(StorageFull):
        insert_past_the_last_page()


def test_a_value_over_sqlite_s_length_limit_is_unstorable(sqlite_database: Database) -> None:
    def insert_too_long() -> None:
        with sqlite_database.connection(write=True) as connection:
            driver = connection.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            driver.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)
            connection.execute(
                sa.text("INSERT INTO notes VALUES ('long', :body)"), {"body": "x" * 2000}
            )

    with pytest.raises(UnstorableInput):
        insert_too_long()


def test_a_held_sqlite_write_lock_is_busy(sqlite_database: Database, tmp_path: Path) -> None:
    def insert_while_another_writes() -> None:
        with translate_db_errors(), sqlite_database.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA busy_timeout = 50")
            connection.execute(sa.text("INSERT INTO notes VALUES ('b', 'waits')"))

    holder = sqlite3.connect(tmp_path / "errors.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseBusy):
            insert_while_another_writes()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_the_service_s_own_bug_goes_on_as_it_is(sqlite_database: Database) -> None:
    with pytest.raises(sa_exc.OperationalError), sqlite_database.session() as session:
        session.execute(sa.text("SELECT * FROM no_such_table"))


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    with database.session(write=True) as session:
        session.execute(sa.text("DROP TABLE IF EXISTS error_notes"))
        session.execute(sa.text("CREATE TABLE error_notes (id TEXT PRIMARY KEY, code VARCHAR(5))"))
        session.execute(sa.text("INSERT INTO error_notes VALUES ('a', 'first')"))
    yield database
    with database.session(write=True) as session:
        session.execute(sa.text("DROP TABLE error_notes"))
    database.dispose()


def test_postgresql_errors_become_their_answers(postgres_database: Database) -> None:
    with pytest.raises(Conflict), postgres_database.session(write=True) as session:
        session.execute(sa.text("INSERT INTO error_notes VALUES ('a', 'again')"))
    with pytest.raises(UnstorableInput), postgres_database.session(write=True) as session:
        session.execute(sa.text("INSERT INTO error_notes VALUES ('b', 'too long')"))


def test_a_postgresql_row_lock_waited_for_too_long_is_busy(postgres_database: Database) -> None:
    notes = sa.table("error_notes", sa.column("id"))
    locked = threading.Event()
    release = threading.Event()

    def hold_the_row() -> None:
        with postgres_database.session(write=True) as session:
            session.execute(with_row_lock(sa.select(notes.c.id).where(notes.c.id == "a")))
            locked.set()
            release.wait(10)

    def lock_it_too() -> None:
        with postgres_database.session(write=True) as session:
            limit_lock_wait(session, 1)
            session.execute(with_row_lock(sa.select(notes.c.id).where(notes.c.id == "a")))

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert locked.wait(10)
        with pytest.raises(DatabaseBusy):
            lock_it_too()
    finally:
        release.set()
        holder.join()


def test_an_unreachable_postgresql_is_unavailable() -> None:
    database = Database("postgresql+psycopg://chorus@127.0.0.1:9/nowhere")
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            database.check()
        assert not isinstance(raised.value, DatabaseBusy)
    finally:
        database.dispose()


# --- real errors that escape a transaction reach the client as problems ---------------------


def _sqlite_error(sql: str, *, setup: str | None = None) -> sa_exc.DBAPIError:
    engine = sa.create_engine("sqlite://")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE t (id TEXT PRIMARY KEY)")
            connection.exec_driver_sql("INSERT INTO t VALUES ('a-secret-value')")
            if setup:
                connection.exec_driver_sql(setup)
            connection.exec_driver_sql(sql)
    except sa_exc.DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{sql} did not fail")


ESCAPED = {
    "unique": _sqlite_error("INSERT INTO t VALUES ('a-secret-value')"),
    "full": _sqlite_error(
        "INSERT INTO t SELECT hex(randomblob(5000)) || 'a-secret-value'",
        setup="PRAGMA max_page_count = 2",
    ),
    "bug": _sqlite_error("SELECT * FROM t WHERE missing = 'a-secret-value'"),
    "pool": sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
}


@pytest.fixture
def escaping_client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/escape/{name}")
    def escape(name: str) -> None:
        raise ESCAPED[name]

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("name", "status", "code", "retry_after"),
    [
        ("unique", 409, "conflict", None),
        ("full", 507, "storage_full", "300"),
        ("bug", 500, "internal_error", None),
        ("pool", 503, "database_unavailable", "5"),
    ],
)
def test_an_escaped_database_error_is_answered_from_the_table(
    escaping_client: TestClient, name: str, status: int, code: str, retry_after: str | None
) -> None:
    response = escaping_client.get(f"/escape/{name}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert response.headers.get("retry-after") == retry_after
    assert "a-secret-value" not in response.text
