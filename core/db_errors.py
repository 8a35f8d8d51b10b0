"""One table from database errors to the answers clients see (RFC 9457 problem+json).

A driver's error carries the database's own code: PostgreSQL's SQLSTATE (psycopg 3:
``sqlstate``), SQLite's extended result code (``sqlite3``: ``sqlite_errorcode``). ``classify``
looks the code up, the exact code first, then its class (a SQLSTATE's first two characters,
a SQLite code's low byte: its primary code), so every code either database can send has an
answer. An error without a code (the driver's own: a refused or closed connection) is judged
by its DB-API type, and a connection SQLAlchemy found dead is unavailable whatever its code.

    failure       answer                          for example
    UNAVAILABLE   503 database_unavailable        08xxx, 57P01-57P03, 53300, 25006, CANTOPEN
    BUSY          503 database_unavailable        40001, 40P01, 55P03, 57014, BUSY, LOCKED
    FULL          507 storage_full                53100, FULL
    CONFLICT      409 conflict                    23505, CONSTRAINT_UNIQUE, _PRIMARYKEY
    UNSTORABLE    422 unstorable_input            22xxx, TOOBIG
    FAULT         500 internal_error              42xxx, XX001, CORRUPT, NOTADB

A FAULT is the service's own (a bug, a corrupt file): it is not turned into a ChorusError but
goes on as it is, so the handler logs it as unhandled, with its type. ``core.db`` raises the
others at the edge of every transaction (``translate_db_errors``); ``core.handlers`` answers
with the same table for a database error that escaped one. Never a message string: the codes
are the databases' stable interface, their messages are not (and may quote stored values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from core.errors import (
    ChorusError,
    Conflict,
    DatabaseBusy,
    DatabaseUnavailable,
    StorageFull,
    UnstorableInput,
)


@dataclass(frozen=True)
class DatabaseFailure:
    """What a database error is answered with; ``error`` None: a fault of the service.

    ``detail`` is what a client may read of a 4xx; a 5xx's detail (the log's) adds the
    database's name and code for the error.
    """

    detail: str
    error: type[ChorusError] | None

    @property
    def status(self) -> int:
        return self.error.status if self.error is not None else ChorusError.status

    @property
    def code(self) -> str:
        return self.error.code if self.error is not None else ChorusError.code

    @property
    def retry_after_s(self) -> int | None:
        """Seconds a client should wait before sending the request again (``Retry-After``)."""
        return self.error.retry_after_s if self.error is not None else None

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed when sent again later."""
        return self.retry_after_s is not None


# The connection is gone or the server cannot serve: it may be back in a moment.
UNAVAILABLE = DatabaseFailure("the database does not answer", DatabaseUnavailable)
# Another transaction held what this one needed (a lock, a row it changed): it was rolled back.
BUSY = DatabaseFailure("the database is busy", DatabaseBusy)
# No room left for the database's files: nothing was written, and an operator must free some.
FULL = DatabaseFailure("the database has no space left", StorageFull)
# A concurrent request took the same unique key first.
CONFLICT = DatabaseFailure("another request stored the same thing at the same time", Conflict)
# A value in the request that the database refused (too long, out of range, malformed).
UNSTORABLE = DatabaseFailure("a value in the request cannot be stored", UnstorableInput)
# The service's own fault (a bug, a corrupt file): answered 500, logged with its type.
FAULT = DatabaseFailure("the service failed", None)

# PostgreSQL: every SQLSTATE class (Appendix A of its manual), then the codes that differ from
# their class. A class PostgreSQL adds later is a FAULT until it is named here.
SQLSTATE_CLASSES: Mapping[str, DatabaseFailure] = {
    "00": FAULT,  # successful completion (never an error)
    "01": FAULT,  # warning (never an error)
    "02": FAULT,  # no data
    "03": FAULT,  # SQL statement not yet complete
    "08": UNAVAILABLE,  # connection exception
    "09": FAULT,  # triggered action exception
    "0A": FAULT,  # feature not supported
    "0B": FAULT,  # invalid transaction initiation
    "0F": FAULT,  # locator exception
    "0L": FAULT,  # invalid grantor
    "0P": FAULT,  # invalid role specification
    "0Z": FAULT,  # diagnostics exception
    "10": FAULT,  # XQuery error
    "20": FAULT,  # case not found
    "21": FAULT,  # cardinality violation
    "22": UNSTORABLE,  # data exception: a value out of range, too long, malformed
    "23": FAULT,  # integrity constraint violation (a bug, but for the unique races below)
    "24": FAULT,  # invalid cursor state
    "25": FAULT,  # invalid transaction state (but for read-only and timeouts below)
    "26": FAULT,  # invalid SQL statement name
    "27": FAULT,  # triggered data change violation
    "28": UNAVAILABLE,  # invalid authorization specification: the server refuses the role
    "2B": FAULT,  # dependent privilege descriptors still exist
    "2D": FAULT,  # invalid transaction termination
    "2F": FAULT,  # SQL routine exception
    "34": FAULT,  # invalid cursor name
    "38": FAULT,  # external routine exception
    "39": FAULT,  # external routine invocation exception
    "3B": FAULT,  # savepoint exception
    "3D": UNAVAILABLE,  # invalid catalog name: the database does not exist (yet)
    "3F": FAULT,  # invalid schema name
    "40": BUSY,  # transaction rollback: serialization failure, deadlock
    "42": FAULT,  # syntax error or access rule violation
    "44": FAULT,  # WITH CHECK OPTION violation
    "53": UNAVAILABLE,  # insufficient resources: memory, connections (disk: below)
    "54": FAULT,  # program limit exceeded
    "55": FAULT,  # object not in prerequisite state (but for the locks below)
    "57": UNAVAILABLE,  # operator intervention: shutdown, crash, cannot connect now
    "58": UNAVAILABLE,  # system error: I/O outside PostgreSQL
    "72": BUSY,  # snapshot failure: snapshot too old
    "F0": UNAVAILABLE,  # configuration file error
    "HV": FAULT,  # foreign data wrapper error
    "P0": FAULT,  # PL/pgSQL error
    "XX": FAULT,  # internal error, data or index corrupted
}
SQLSTATES: Mapping[str, DatabaseFailure] = {
    "23505": CONFLICT,  # unique_violation
    "23P01": CONFLICT,  # exclusion_violation
    "25006": UNAVAILABLE,  # read_only_sql_transaction: a standby, or a failover under way
    "25P03": UNAVAILABLE,  # idle_in_transaction_session_timeout: the server closed it
    "25P04": BUSY,  # transaction_timeout
    "53100": FULL,  # disk_full
    "55006": BUSY,  # object_in_use
    "55P03": BUSY,  # lock_not_available: lock_timeout ran out
    "57014": BUSY,  # query_canceled: statement_timeout, or a cancel request
}

# SQLite: every primary result code, then the extended codes that differ from their primary.
SQLITE_PRIMARY_CODES: Mapping[int, DatabaseFailure] = {
    0: FAULT,  # SQLITE_OK (never an error)
    1: FAULT,  # SQLITE_ERROR: an SQL error or a missing table
    2: FAULT,  # SQLITE_INTERNAL
    3: UNAVAILABLE,  # SQLITE_PERM: the file's permissions refuse the access
    4: BUSY,  # SQLITE_ABORT: the statement was rolled back under it
    5: BUSY,  # SQLITE_BUSY: another connection holds the write lock
    6: BUSY,  # SQLITE_LOCKED: a table of this connection's own is locked
    7: UNAVAILABLE,  # SQLITE_NOMEM
    8: UNAVAILABLE,  # SQLITE_READONLY: a read-only file or medium
    9: BUSY,  # SQLITE_INTERRUPT: interrupted
    10: UNAVAILABLE,  # SQLITE_IOERR: the medium failed
    11: FAULT,  # SQLITE_CORRUPT
    12: FAULT,  # SQLITE_NOTFOUND (internal)
    13: FULL,  # SQLITE_FULL: the disk is full
    14: UNAVAILABLE,  # SQLITE_CANTOPEN: the file cannot be opened
    15: BUSY,  # SQLITE_PROTOCOL: a locking race, lost
    16: FAULT,  # SQLITE_EMPTY (unused)
    17: BUSY,  # SQLITE_SCHEMA: the schema changed under the statement
    18: UNSTORABLE,  # SQLITE_TOOBIG: a string or blob over the length limit
    19: FAULT,  # SQLITE_CONSTRAINT (a bug, but for the unique races below)
    20: UNSTORABLE,  # SQLITE_MISMATCH: a value of the wrong type
    21: FAULT,  # SQLITE_MISUSE
    22: UNAVAILABLE,  # SQLITE_NOLFS: the file outgrew what the host supports
    23: FAULT,  # SQLITE_AUTH: an authorizer refused (Chorus sets none)
    24: FAULT,  # SQLITE_FORMAT (unused)
    25: FAULT,  # SQLITE_RANGE: a parameter index out of range
    26: FAULT,  # SQLITE_NOTADB: the file is not a database
    27: FAULT,  # SQLITE_NOTICE (never an error)
    28: FAULT,  # SQLITE_WARNING (never an error)
    100: FAULT,  # SQLITE_ROW (never an error)
    101: FAULT,  # SQLITE_DONE (never an error)
}
SQLITE_EXTENDED_CODES: Mapping[int, DatabaseFailure] = {
    1555: CONFLICT,  # SQLITE_CONSTRAINT_PRIMARYKEY
    2067: CONFLICT,  # SQLITE_CONSTRAINT_UNIQUE
    2579: CONFLICT,  # SQLITE_CONSTRAINT_ROWID
    8458: FAULT,  # SQLITE_IOERR_CORRUPTFS: the file system reports corruption
}

# Errors that carry no database code: the driver's own, judged by their DB-API type (PEP 249).
DBAPI_TYPES: Mapping[type[sa_exc.DBAPIError], DatabaseFailure] = {
    sa_exc.OperationalError: UNAVAILABLE,  # connecting failed, the connection broke
    sa_exc.InterfaceError: UNAVAILABLE,  # the connection is closed
    sa_exc.DataError: UNSTORABLE,
}


def classify(exc: BaseException) -> DatabaseFailure | None:
    """What ``exc`` means for the request that met it; None: not a database error."""
    if isinstance(exc, sa_exc.TimeoutError):
        return BUSY  # every pooled connection stayed in use
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    if exc.connection_invalidated:
        return UNAVAILABLE
    failure = _by_code(exc.orig)
    if failure is not None:
        return failure
    for dbapi_type, failure in DBAPI_TYPES.items():
        if isinstance(exc, dbapi_type):
            return failure
    return FAULT


def _by_code(orig: BaseException | None) -> DatabaseFailure | None:
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        return SQLSTATES.get(sqlstate) or SQLSTATE_CLASSES.get(sqlstate[:2], FAULT)
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return SQLITE_EXTENDED_CODES.get(code) or SQLITE_PRIMARY_CODES.get(code & 0xFF, FAULT)
    return None


def database_error(exc: BaseException) -> ChorusError | None:
    """The ChorusError to raise or answer for ``exc``; None for a fault of the service or
    an error that is not the database's."""
    failure = classify(exc)
    if failure is None or failure.error is None:
        return None
    if failure.error.status < 500:
        return failure.error(failure.detail)
    return failure.error(f"{failure.detail}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """The database's name for the error and its code, never its message (which may quote a
    stored value)."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    name = getattr(orig, "sqlite_errorname", None) or type(orig).__name__
    sqlstate = getattr(orig, "sqlstate", None)
    return f"{name} ({sqlstate})" if sqlstate else str(name)
