"""Database engine, sessions and schema migrations (SQLite by default, PostgreSQL for scale).

The one module that knows the SQL dialect: what differs between SQLite and PostgreSQL (row and
advisory locks, lock timeouts, insert-or-ignore, savepoint retries, partial indexes, rowids,
PRAGMAs, VACUUM) sits behind the functions and ``Database`` methods here, so the domains speak
SQLAlchemy Core and ORM and these alone (``tests/core/test_dialect_boundary.py`` holds them to
it). Database errors become ChorusErrors at the edge of every transaction, through
``core.db_errors``' table.

Residue (P3, P4): SQLite connections zero deleted content (``secure_delete``), its files are
``0600`` (``-wal`` and ``-shm`` take the database file's mode), and ``purge_residue`` empties
the WAL (SQLite) or vacuums dead tuples out of the clip tables (PostgreSQL).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from core.db_errors import database_error
from core.errors import ConfigurationError, DatabaseBusy, DatabaseUnavailable
from core.files import FILE_MODE, make_private_dir, make_private_file, restrict

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_MIGRATION_LOCK = 0x43484D47  # "CHMG"
WRITE_OPTION = "chorus_write"
WRITER_QUEUE_TIMEOUT_S = 10.0
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# A WAL checkpoint waits this long for readers per try, and tries this often.
CHECKPOINT_BUSY_MS = 250
CHECKPOINT_ATTEMPTS = 8
_logger = logging.getLogger("chorus.db")
_T = TypeVar("_T")
_SelectT = TypeVar("_SelectT", bound=sa.GenerativeSelect)
# A transaction's statements run on an ORM Session or on a Core Connection alike.
Executor = Session | sa.Connection


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=_NAMING)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def sqlite_file_path(url: str) -> str | None:
    """The file a SQLite URL names, as written; None for another database, an in-memory one
    or a malformed URL."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    return path


# --- schema: what the tables' declarations need of the dialect ------------------------------


def without_insertion_order() -> dict[str, Any]:
    """Table options (the dict of ``__table_args__``) for a table whose rows must not keep
    the order they were stored in (P4): SQLite keeps it WITHOUT ROWID, in key order;
    PostgreSQL tables have no insert-ordered column."""
    return {"sqlite_with_rowid": False}


def partial_index(name: str, *columns: str, where: str, unique: bool = False) -> sa.Index:
    """An index over the rows where the SQL condition ``where`` holds, on either database."""
    condition = sa.text(where)
    return sa.Index(
        name, *columns, unique=unique, sqlite_where=condition, postgresql_where=condition
    )


# --- statements and locks inside a transaction ----------------------------------------------


def _dialect_name(executor: Executor) -> str:
    bind = executor.get_bind() if isinstance(executor, Session) else executor
    return bind.dialect.name


def with_row_lock(statement: _SelectT, *, shared: bool = False) -> _SelectT:
    """``statement`` with the rows it selects locked until the transaction ends.

    PostgreSQL: ``FOR UPDATE``, or ``FOR SHARE`` when ``shared`` (many may share, none may
    update). SQLite has no row locks and leaves the clause out: a writing transaction holds the
    whole database from its ``BEGIN IMMEDIATE`` (``Database.session(write=True)``).
    """
    return statement.with_for_update(read=shared)


def limit_lock_wait(executor: Executor, seconds: int) -> None:
    """Let the rest of this transaction wait at most ``seconds`` for a lock, then fail with
    ``DatabaseBusy`` (at the transaction's edge) instead of waiting on.

    PostgreSQL: ``SET LOCAL lock_timeout``. SQLite: every connection's busy timeout (10 s)
    already bounds the wait for its one lock.
    """
    if _dialect_name(executor) == "postgresql":
        executor.execute(sa.text(f"SET LOCAL lock_timeout = '{int(seconds)}s'"))


def transaction_lock(executor: Executor, key: int) -> None:
    """Take the lock ``key`` until the transaction ends: other transactions taking it wait.

    PostgreSQL: a transaction-scoped advisory lock (taken again in the same transaction, it is
    simply held). SQLite has nothing to take: its writing transactions run one at a time
    already, so the caller must be one (``write=True``).
    """
    if _dialect_name(executor) == "postgresql":
        executor.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


_INSERTS: dict[str, Callable[[sa.Table], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


def insert_ignoring_duplicates(
    executor: Executor,
    table: sa.Table | type[Base],
    values: Mapping[str, Any],
    *,
    keys: Sequence[str],
) -> bool:
    """INSERT ``values`` unless ``table`` has a row with the same ``keys`` (a unique index);
    True when the row went in. ``ON CONFLICT DO NOTHING``: no error, so the transaction goes on.
    """
    target = table if isinstance(table, sa.Table) else cast(sa.Table, table.__table__)
    statement = (
        _INSERTS[_dialect_name(executor)](target)
        .values(**values)
        .on_conflict_do_nothing(index_elements=keys)
        .returning(target.c[keys[0]])
    )
    # RETURNING yields a row only when one was inserted (rowcount is not reliable here).
    return executor.execute(statement).first() is not None


def retrying_unique_races(
    executor: Executor, attempt: Callable[[], _T], *, attempts: int
) -> _T | None:
    """``attempt()``, run again while a concurrent transaction takes a unique key that it
    meant to take; None when it lost ``attempts`` such races in a row.

    PostgreSQL: each try runs in a savepoint, so a lost race (an ``IntegrityError``) undoes that
    try alone and the next one sees the winner's row. SQLite runs one writing transaction at a
    time: no other writes between a try's reads and its insert, so ``attempt`` runs once,
    outside any savepoint. Either way the caller must be a writing transaction.
    """
    if _dialect_name(executor) != "postgresql":
        return attempt()
    for _try in range(attempts):
        try:
            with executor.begin_nested():
                return attempt()
        except IntegrityError:
            continue
    return None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Chorus issues BEGIN itself (see _sqlite_begin), so pysqlite must not.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Deleted rows are overwritten with zeros, in the page and on the free list (P3, P4).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    """Writers take SQLite's write lock up front (BEGIN IMMEDIATE).

    A deferred transaction that reads and then writes fails at once with "database is locked"
    when another writer committed in between; an immediate one waits its turn (busy_timeout).
    """
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder and WAL mode, PostgreSQL psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"CHORUS_DATABASE_URL is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            _prepare_sqlite_file(Path(database))
        engine = sa.create_engine(parsed, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return sa.create_engine(
                parsed,
                pool_pre_ping=True,
                pool_size=10,
                max_overflow=10,
                pool_timeout=10,
                connect_args={"connect_timeout": 5},
            )
        except NoSuchModuleError as exc:
            raise ConfigurationError(f"unsupported database driver: {exc}") from None
    raise ConfigurationError(
        f"unsupported database {backend!r}: use sqlite:///PATH or postgresql+psycopg://..."
    )


def _prepare_sqlite_file(path: Path) -> None:
    """The database file exists as ``0600`` (in a ``0700`` folder when Chorus creates it) before
    SQLite first opens it: SQLite gives ``-wal`` and ``-shm`` the database file's mode."""
    make_private_dir(path.parent)
    make_private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        restrict(Path(f"{path}{suffix}"), FILE_MODE)


class _FifoLock:
    """A lock taken in arrival order: a thread that releases it and asks again at once (a loop
    of short transactions) queues behind the threads already waiting, instead of winning every
    time as it does with ``threading.Lock``."""

    def __init__(self) -> None:
        self._turns = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()

    def acquire(self, timeout: float) -> bool:
        with self._turns:
            ticket = self._next_ticket
            self._next_ticket += 1
            if self._turns.wait_for(lambda: self._serving == ticket, timeout=timeout):
                return True
            # Give up the place in the queue: the ticket is served and passed on at once.
            self._abandoned.add(ticket)
            self._skip_abandoned()
            return False

    def release(self) -> None:
        with self._turns:
            self._serving += 1
            self._skip_abandoned()
            self._turns.notify_all()

    def _skip_abandoned(self) -> None:
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1


class SqliteWriterQueue:
    """SQLite has one writer: writers wait their turn here rather than in SQLite's busy handler,
    which sleeps up to 100 ms between tries and can starve one.

    Threads of one process queue on a lock; processes sharing the database file (the API
    process, its upload workers, a ``chorus release`` run) on an advisory lock of a file beside
    it, polled at sub-millisecond steps. A process that dies lets go of its file lock.
    """

    def __init__(self, database_path: str | None) -> None:
        self._threads = _FifoLock()
        self._lock_path = f"{database_path}-writer.lock" if database_path else None
        self._fd: int | None = None
        self._fd_pid = 0

    @contextlib.contextmanager
    def turn(self, *, timeout_s: float = WRITER_QUEUE_TIMEOUT_S) -> Iterator[None]:
        deadline = time.monotonic() + timeout_s
        if not self._threads.acquire(timeout=timeout_s):
            raise DatabaseBusy("the database is busy; try again")
        try:
            fd = self._lock_file()
            if fd is not None:
                self._lock_across_processes(fd, deadline)
            try:
                yield
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock_file(self) -> int | None:
        if self._lock_path is None:
            return None
        if self._fd is None or self._fd_pid != os.getpid():
            # Each process opens its own: a descriptor inherited across fork shares its lock.
            self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._fd_pid = os.getpid()
        return self._fd

    @staticmethod
    def _lock_across_processes(fd: int, deadline: float) -> None:
        delay = 0.0002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DatabaseBusy("the database is busy; try again") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.002)

    def close(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None


class Database:
    """An engine with its session factory; the one handle services receive."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        path = sqlite_file_path(url)
        # The SQLite database's file, beside which its lock files live (None: not a SQLite file).
        self._sqlite_file = str(Path(path).resolve()) if path is not None else None
        is_sqlite = self.engine.dialect.name == "sqlite"
        self._sqlite_writer = SqliteWriterQueue(self._sqlite_file) if is_sqlite else None

    @contextlib.contextmanager
    def sidecar_lock(self, name: str) -> Iterator[bool]:
        """Yields whether this caller got the SQLite database's ``name`` lock (without waiting).

        An exclusive ``flock`` on a file beside the database, on a descriptor of its own, so it
        excludes other threads as well as other processes; an in-memory database has no other
        users and always gets it.
        """
        if self._sqlite_file is None:
            yield True
            return
        fd = os.open(f"{self._sqlite_file}-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # lets go of the lock

    @contextlib.contextmanager
    def try_lock(self, name: str, *, group: str | None = None) -> Iterator[bool]:
        """Yields whether this caller alone holds the lock ``name`` across processes and hosts.

        PostgreSQL: a session advisory lock on a dedicated connection, held across any number
        of short transactions and let go by the server when a killed holder's connection drops.
        SQLite: ``sidecar_lock(group or name)``, which a killed holder's process lets go of: the
        locks of one ``group`` exclude one another there, as its writers take turns anyway.
        Never waits: a caller that does not get it knows someone else is doing the work.
        """
        if not self.is_postgres:
            with self.sidecar_lock(group or name) as acquired:
                yield acquired
            return
        number = advisory_lock_number(name)
        with self.engine.connect() as connection:
            acquired = bool(
                connection.execute(
                    sa.text("SELECT pg_try_advisory_lock(:n)"), {"n": number}
                ).scalar()
            )
            connection.commit()
            try:
                yield acquired
            finally:
                if acquired:
                    with contextlib.suppress(DBAPIError):
                        connection.execute(sa.text("SELECT pg_advisory_unlock(:n)"), {"n": number})
                        connection.commit()

    @property
    def is_shared_file(self) -> bool:
        """Whether other processes can open this database (not an in-memory SQLite one)."""
        return self.engine.dialect.name != "sqlite" or self._sqlite_file is not None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def locks_each_name(self) -> bool:
        """Whether ``try_lock`` locks each name apart (PostgreSQL); False: a name's lock is its
        group's, for every name of the group (SQLite)."""
        return self.is_postgres

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error.

        ``write=True`` marks a read-then-write transaction; on SQLite it takes the write lock
        at BEGIN so concurrent writers queue instead of failing.
        """
        with self._writer_turn(write):
            session = self.sessions()
            try:
                with translate_db_errors():
                    if write:
                        session.connection(execution_options={WRITE_OPTION: True})
                    yield session
                    session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    @contextlib.contextmanager
    def connection(self, *, write: bool = False) -> Iterator[sa.Connection]:
        """A Core connection in a transaction, like ``session`` without the ORM's unit of work.

        For hot paths that only run statements (the upload's row): committed on success,
        rolled back on error, and on SQLite ``write=True`` queues for the write lock.
        """
        with (
            self._writer_turn(write),
            translate_db_errors(),
            self.engine.connect() as connection,
        ):
            if write:
                connection = connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                yield connection

    def _writer_turn(self, write: bool) -> contextlib.AbstractContextManager[None]:
        if write and self._sqlite_writer is not None:
            return self._sqlite_writer.turn()
        return contextlib.nullcontext()

    def check(self) -> None:
        """Readiness probe: raises DatabaseUnavailable when the database does not answer."""
        with translate_db_errors(), self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database's file (None for PostgreSQL and in-memory SQLite)."""
        return Path(self._sqlite_file) if self._sqlite_file is not None else None

    def secure_delete_enabled(self) -> bool | None:
        """Whether a connection of this engine has SQLite's ``secure_delete`` on (None: not
        SQLite; PostgreSQL's dead tuples are ``purge_residue``'s matter)."""
        if self.engine.dialect.name != "sqlite":
            return None
        with self.engine.connect() as connection:
            return bool(connection.exec_driver_sql("PRAGMA secure_delete").scalar_one())

    def tables_with_rowid(self, tables: Sequence[str]) -> list[str]:
        """Those of ``tables`` that exist with SQLite's hidden, insert-ordered ``rowid`` (not
        ``WITHOUT ROWID``); always empty on PostgreSQL, which has no such column."""
        if self.engine.dialect.name != "sqlite":
            return []
        present = set(sa.inspect(self.engine).get_table_names())
        quote = self.engine.dialect.identifier_preparer.quote
        found = []
        with self.engine.connect() as connection:
            for table in (t for t in tables if t in present):
                try:
                    connection.exec_driver_sql(f"SELECT rowid FROM {quote(table)} LIMIT 0")  # noqa: S608
                except OperationalError:  # "no such column: rowid": a WITHOUT ROWID table
                    continue
                found.append(table)
        return found

    def column_types(self, tables: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Column names and declared types of those of ``tables`` that exist, as the database
        reports them (SQLite's ``table_info``, PostgreSQL's catalog), not as the models say: a
        column added by hand is there too."""
        result: dict[str, list[tuple[str, str]]] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unfamiliar reflected types must not stop an audit
            inspector = sa.inspect(self.engine)
            present = set(inspector.get_table_names())
            for table in (t for t in tables if t in present):
                if self.engine.dialect.name == "sqlite":
                    quoted = self.engine.dialect.identifier_preparer.quote(table)
                    with self.engine.connect() as connection:
                        rows = connection.exec_driver_sql(f"PRAGMA table_info({quoted})").all()
                    result[table] = [(str(row[1]), str(row[2])) for row in rows]
                else:
                    result[table] = [
                        (column["name"], self._type_name(column["type"]))
                        for column in inspector.get_columns(table)
                    ]
        return result

    def _type_name(self, type_: Any) -> str:
        try:
            return str(type_.compile(dialect=self.engine.dialect))
        except Exception:  # a type the dialect cannot render still has a class name
            return type(type_).__name__

    def ids_in_insertion_order(self, table: str) -> list[str] | None:
        """The ``id`` values of ``table`` in the physical order of its rows (SQLite's rowid,
        PostgreSQL's ctid), which is insertion order; None where the database keeps none (a
        SQLite table WITHOUT ROWID) or shows none."""
        order = {"sqlite": "rowid", "postgresql": "ctid"}.get(self.engine.dialect.name)
        if order is None:
            return None
        quoted = self.engine.dialect.identifier_preparer.quote(table)
        with self.engine.connect() as connection:
            try:
                rows = connection.exec_driver_sql(
                    f"SELECT id FROM {quoted} ORDER BY {order}"  # noqa: S608
                ).all()
            except OperationalError:
                # A SQLite table WITHOUT ROWID keeps rows in key order only: nothing to read.
                return None
        return [str(row[0]) for row in rows]

    def purge_residue(self, tables: Sequence[str]) -> bool:
        """Remove what deleted rows of ``tables`` leave in the database's files (P3, P4).

        SQLite: ``secure_delete`` already zeroed them in the database file; a
        ``wal_checkpoint(TRUNCATE)`` copies the WAL back and empties it to 0 bytes, so the old
        page images go too. It needs every other connection to read from the database file, so
        it takes the writer's turn and retries a few times while readers finish.
        PostgreSQL: ``VACUUM`` of ``tables`` (in autocommit: it cannot run in a transaction)
        removes dead tuples from their pages; pg_wal and backups are out of its reach.

        Returns whether the purge completed; False when SQLite readers kept the WAL busy.
        """
        if self.is_postgres:
            self._vacuum(tables)
            return True
        if self._sqlite_file is None:
            return True
        return self._checkpoint_wal()

    def _vacuum(self, tables: Sequence[str]) -> None:
        quote = self.engine.dialect.identifier_preparer.quote
        statement = "VACUUM " + ", ".join(quote(table) for table in tables)
        with (
            translate_db_errors(),
            self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
        ):
            connection.exec_driver_sql(statement)

    def _checkpoint_wal(self) -> bool:
        with self._writer_turn(True), translate_db_errors():
            pooled = self.engine.raw_connection()
            try:
                # The driver connection itself: no BEGIN, as a checkpoint must run outside one.
                sqlite = pooled.driver_connection
                assert sqlite is not None
                sqlite.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
                try:
                    for attempt in range(CHECKPOINT_ATTEMPTS):
                        busy, _, _ = sqlite.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                        if not busy:
                            return True
                        time.sleep(0.05 * (attempt + 1))
                finally:
                    sqlite.execute("PRAGMA busy_timeout=10000")
            finally:
                pooled.close()
        _logger.warning("the WAL checkpoint stayed busy; the next purge retries it")
        return False

    def upgrade(self) -> None:
        upgrade(self.url)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._sqlite_writer is not None:
            self._sqlite_writer.close()


def advisory_lock_number(name: str) -> int:
    """A PostgreSQL advisory lock key (signed 64 bits) for a lock name."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def translate_db_errors(*, for_a_request: bool = True) -> Iterator[None]:
    """Turn a database error into the ChorusError ``core.db_errors`` names for it: 503
    ``database_unavailable`` (``DatabaseBusy`` for a lock or a deadlock), 507 ``storage_full``,
    409 ``conflict``, 422 ``unstorable_input``. A fault of the service's own (a bug, a corrupt
    file) goes on as it is; so does what would blame a request, outside one (a migration)."""
    try:
        yield
    except (DBAPIError, PoolTimeout) as exc:
        error = database_error(exc)
        if error is None or (error.status < 500 and not for_a_request):
            raise
        raise error from exc


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def describe(url: str) -> str:
    """Where a database URL points, for an operator: backend, host, port and name, no password."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return f"the SQLite database {parsed.database}"
    where = f"{parsed.host or 'localhost'}" + (f":{parsed.port}" if parsed.port else "")
    return f"the {backend} server at {where} (database {parsed.database})"


def upgrade(url: str, revision: str = "heads") -> None:
    """Apply every migration up to ``revision`` (all heads by default)."""
    engine = make_engine(url)
    try:
        with (
            _naming_the_server(url),
            translate_db_errors(for_a_request=False),
            engine.begin() as connection,
        ):
            # Replicas starting together take turns; the later ones find the schema current.
            transaction_lock(connection, _MIGRATION_LOCK)
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _naming_the_server(url: str) -> Iterator[None]:
    """The operator's version of a 503: which server could not be reached, and the driver's
    reason (its first line: no query, no values)."""
    try:
        yield
    except DatabaseUnavailable as exc:
        cause = exc.__cause__
        original = cause.orig if isinstance(cause, DBAPIError) else cause
        reason = str(original).strip().splitlines()[0][:300] if original is not None else ""
        detail = f"cannot connect to {describe(url)}" + (f": {reason}" if reason else "")
        raise DatabaseUnavailable(detail) from cause


def current_revisions(url: str) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
