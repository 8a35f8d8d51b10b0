"""Only ``core/db.py`` knows the SQL dialect (docs/architecture.md, convention 11).

Every package's source is read (AST) for what differs between SQLite and PostgreSQL: the
dialects' own modules and drivers, the dialect of an engine, row locks, insert-or-ignore,
dialect options of a table, the drivers' error codes, and SQL that only one database speaks
(PRAGMA, advisory locks, lock timeouts, VACUUM, BEGIN IMMEDIATE …). Domains reach all of it
through ``core.db``; migrations and the few modules below, which are about one database
itself, keep their own.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_layers import PACKAGES, ROOT

BOUNDARY = {
    "core/db.py": "the dialect boundary itself",
    "core/db_errors.py": "the table of SQLSTATEs and SQLite result codes",
}
EXEMPT_FOLDERS = {"core/migrations": "migrations create each database's schema in its terms"}
EXEMPT = {
    "core/idempotency.py": "its own SQLite file on tmpfs, a key store like Redis, not the "
    "service's database",
    "chorus/devservers_postgres.py": "starts PostgreSQL servers for tests and the demo, as "
    "their administrator",
}

_DIALECT_MODULES = re.compile(r"^(sqlalchemy\.dialects|sqlite3|psycopg|psycopg2|pysqlite)(\.|$)")
_DIALECT_ATTRIBUTES = frozenset(
    {
        "dialect",
        "get_backend_name",
        "identifier_preparer",
        "exec_driver_sql",
        "with_for_update",
        "on_conflict_do_nothing",
        "on_conflict_do_update",
        "sqlstate",
        "pgcode",
        "sqlite_errorcode",
        "sqlite_errorname",
    }
)
_DIALECT_NAMES = frozenset({"sqlite", "postgresql", "postgres", "psycopg", "psycopg2", "pysqlite"})
# SQLAlchemy's dialect options: Index(sqlite_where=…), {"sqlite_with_rowid": False}, …
_DIALECT_KEYWORD = re.compile(r"^(sqlite|postgresql|psycopg)_\w+$")
_DIALECT_OPTION = re.compile(
    r"^(sqlite|postgresql)_(with_rowid|where|autoincrement|strict|on_conflict\w*|using|include"
    r"|ops|concurrently|with|tablespace|partition_by|inherits|nulls_not_distinct|not_valid)$"
)
# A statement: text that opens with an SQL command (operators' prose may name one in passing).
_STATEMENT = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|SET|BEGIN|PRAGMA|VACUUM|WITH|CREATE|ALTER|DROP|LOCK"
    r"|ANALYZE|REINDEX|CHECKPOINT|REPLACE)\b"
)
_DIALECT_SQL = re.compile(
    r"\bPRAGMA\b|\bFOR (UPDATE|SHARE|NO KEY UPDATE|KEY SHARE)\b|\bSKIP LOCKED\b|\bNOWAIT\b"
    r"|\bBEGIN (IMMEDIATE|EXCLUSIVE|DEFERRED)\b|\bSET LOCAL\b|\bVACUUM\b|\bON CONFLICT\b"
    r"|\bINSERT OR (IGNORE|REPLACE)\b|\bpg_\w+\s*\(|\bwal_checkpoint\b|\block_timeout\b"
)


def dialect_constructs(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each dialect-specific construct in ``source``; docstrings are prose."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    dict_keys = {
        id(key) for node in ast.walk(tree) if isinstance(node, ast.Dict) for key in node.keys
    }
    # An f-string is read whole, its values as {}: its SQL may open in one part, go on in another.
    f_string_parts = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values
            )
            yield from _sql(node.lineno, text)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _DIALECT_MODULES.match(alias.name):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _DIALECT_MODULES.match(node.module):
                yield node.lineno, f"from {node.module} import …"
        elif isinstance(node, ast.Attribute) and node.attr in _DIALECT_ATTRIBUTES:
            yield node.lineno, f".{node.attr}"
        elif isinstance(node, ast.keyword) and node.arg and _DIALECT_KEYWORD.match(node.arg):
            yield node.lineno, f"{node.arg}="
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings or id(node) in f_string_parts:
                continue
            text = node.value
            named = text in _DIALECT_NAMES or text in _DIALECT_ATTRIBUTES
            if named or (id(node) in dict_keys and _DIALECT_OPTION.match(text)):
                yield node.lineno, repr(text)
            else:
                yield from _sql(node.lineno, text)


def _sql(line: int, text: str) -> Iterator[tuple[int, str]]:
    if _STATEMENT.match(text) and (found := _DIALECT_SQL.search(text)):
        yield line, f"SQL {found.group(0)!r}"


def _sources() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def _exempt(relative: str) -> bool:
    return (
        relative in BOUNDARY
        or relative in EXEMPT
        or any(relative.startswith(f"{folder}/") for folder in EXEMPT_FOLDERS)
    )


def test_only_core_db_speaks_a_dialect() -> None:
    found = [
        f"{relative}:{line}: {what}"
        for relative, path in _sources()
        if not _exempt(relative)
        for line, what in sorted(dialect_constructs(path.read_text(encoding="utf-8")))
    ]
    assert not found, "dialect-specific code outside core/db.py (put it behind core.db):\n" + (
        "\n".join(found)
    )


@pytest.mark.parametrize("relative", sorted({**BOUNDARY, **EXEMPT}))
def test_every_exemption_is_still_needed(relative: str) -> None:
    path = ROOT / relative
    assert path.is_file(), f"{relative} is gone: drop its exemption"
    assert list(dialect_constructs(path.read_text(encoding="utf-8"))), (
        f"{relative} speaks no dialect any more: drop its exemption"
    )


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("from sqlalchemy.dialects.sqlite import insert", "from sqlalchemy.dialects.sqlite"),
        ("import psycopg", "import psycopg"),
        ("if session.get_bind().dialect.name == 'postgresql': pass", ".dialect"),
        ("x = 'postgresql' == name", "'postgresql'"),
        ("statement = select(Bucket).with_for_update(read=True)", ".with_for_update"),
        ("insert(t).values(a=1).on_conflict_do_nothing()", ".on_conflict_do_nothing"),
        ("code = getattr(exc.orig, 'sqlstate', None)", "'sqlstate'"),
        ("code = exc.orig.sqlite_errorcode", ".sqlite_errorcode"),
        ("Index('ix', 'a', sqlite_where=text('a'))", "sqlite_where="),
        ("__table_args__ = ({'sqlite_with_rowid': False},)", "'sqlite_with_rowid'"),
        ("session.execute(text('SELECT pg_advisory_xact_lock(:key)'))", "SQL 'pg_advisory"),
        ("session.execute(text(\"SET LOCAL lock_timeout = '30s'\"))", "SQL 'SET LOCAL'"),
        ("connection.exec_driver_sql('PRAGMA table_info(t)')", ".exec_driver_sql"),
        ("run(f'VACUUM {table}')", "SQL 'VACUUM'"),
        ("run('BEGIN IMMEDIATE')", "SQL 'BEGIN IMMEDIATE'"),
        ("run('SELECT id FROM t FOR UPDATE SKIP LOCKED')", "SQL 'FOR UPDATE'"),
        ("run(f'SELECT id FROM {table} FOR UPDATE')", "SQL 'FOR UPDATE'"),
        ("order = {'sqlite': 'rowid', 'postgresql': 'ctid'}", "'sqlite'"),
    ],
)
def test_each_dialect_construct_is_seen(source: str, what: str) -> None:
    assert any(found.startswith(what) for _line, found in dialect_constructs(source)), what


def test_prose_and_names_are_not_dialect_code() -> None:
    source = '''
"""Module prose may say PRAGMA, FOR UPDATE and pg_advisory_lock(n)."""
FINDINGS = {"sqlite_secure_delete_off": "run VACUUM once; PRAGMA secure_delete=ON is ours"}
URL = "sqlite:///./var/chorus.db"

def check_sqlite_pragmas(database):
    """Whether SQLite's secure_delete is on (PRAGMA secure_delete)."""
    return database.secure_delete_enabled()
'''
    assert list(dialect_constructs(source)) == []
