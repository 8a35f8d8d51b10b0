"""Database engine, sessions and schema migrations (SQLite by default, PostgreSQL for scale)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from core.errors import ConfigurationError, DatabaseUnavailable

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


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=_NAMING)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Chorus issues BEGIN itself (see _sqlite_begin), so pysqlite must not.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
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
            Path(database).parent.mkdir(parents=True, exist_ok=True)
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


class Database:
    """An engine with its session factory; the one handle services receive."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer: this process's writers queue here, in turn, instead of in
        # SQLite's busy handler, which sleeps up to 100 ms between tries and can starve one.
        self._sqlite_writer = threading.Lock() if self.engine.dialect.name == "sqlite" else None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error.

        ``write=True`` marks a read-then-write transaction; on SQLite it takes the write lock
        at BEGIN so concurrent writers queue instead of failing.
        """
        lock = self._sqlite_writer if write else None
        if lock is not None and not lock.acquire(timeout=WRITER_QUEUE_TIMEOUT_S):
            raise DatabaseUnavailable("the database is busy; try again")
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
            if lock is not None:
                lock.release()

    def check(self) -> None:
        """Readiness probe: raises DatabaseUnavailable when the database does not answer."""
        with translate_db_errors(), self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def upgrade(self) -> None:
        upgrade(self.url)

    def dispose(self) -> None:
        self.engine.dispose()


@contextlib.contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn lost connections and unreachable servers into a 503 ``database_unavailable``."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_connectivity_error(exc):
            raise DatabaseUnavailable() from exc
        raise


def _is_connectivity_error(exc: DBAPIError) -> bool:
    orig = exc.orig
    name = type(orig).__name__ if orig is not None else ""
    if name in {"OperationalError", "InterfaceError", "AdminShutdown", "ConnectionTimeout"}:
        message = str(orig).lower()
        return "locked" not in message or "database is locked" in message
    return False


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Apply every migration up to ``revision`` (all heads by default)."""
    engine = make_engine(url)
    try:
        with translate_db_errors(), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together take turns; the later ones find the schema current.
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def current_revisions(url: str) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
