"""Audit checks of the live schema and of ids (P4): nothing says when a clip arrived.

The schema is read from the database itself (PRAGMA on SQLite, the inspector elsewhere), so a
column added by hand is seen even though no model declares it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from policies import time_ids
from policies.context import CLIP_TABLES, ID_COLUMNS, PENDING_PREFIX, RELEASES_PREFIX, AuditContext
from policies.findings import Finding

# --- P4: schema and ids ----------------------------------------------------------------------


def check_timestamp_columns(ctx: AuditContext) -> Iterable[Finding]:
    """No clip or bucket table in the live schema has a date-time, time or interval column."""
    for table, columns in _live_column_types(ctx.engine, CLIP_TABLES).items():
        for column, type_name in columns:
            upper = type_name.upper()
            if "TIME" in upper or "INTERVAL" in upper:
                yield Finding(
                    "timestamp_column",
                    "P4",
                    f"column {table}.{column} has the time type {type_name}",
                    f"{table}.{column}",
                )


def _live_column_types(engine: Engine, tables: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """Column names and declared types as the database reports them, not as the ORM says."""
    result: dict[str, list[tuple[str, str]]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unfamiliar reflected types must not stop an audit
        inspector = sa.inspect(engine)
        present = set(inspector.get_table_names())
        for table in tables:
            if table not in present:
                continue
            if engine.dialect.name == "sqlite":
                quoted = engine.dialect.identifier_preparer.quote(table)
                with engine.connect() as connection:
                    rows = connection.exec_driver_sql(f"PRAGMA table_info({quoted})").all()
                result[table] = [(str(row[1]), str(row[2])) for row in rows]
            else:
                result[table] = [
                    (column["name"], _type_name(column["type"], engine))
                    for column in inspector.get_columns(table)
                ]
    return result


def _type_name(type_: Any, engine: Engine) -> str:
    try:
        return str(type_.compile(dialect=engine.dialect))
    except Exception:  # a type the dialect cannot render still has a class name
        return type(type_).__name__


def check_ids(ctx: AuditContext) -> Iterable[Finding]:
    """Ids and object names are random 128-bit hex: no counters, no time-based UUIDs."""
    live = _live_column_types(ctx.engine, tuple(ID_COLUMNS))
    for table, wanted in ID_COLUMNS.items():
        present = {name for name, _type in live.get(table, [])}
        for column in wanted:
            if column in present:
                values = _column_values(ctx.engine, table, column)
                yield from _judge_ids(f"{table}.{column}", values)
        if "id" in present:
            ordered = _ids_in_insertion_order(ctx.engine, table)
            if ordered is not None and time_ids.increases_with_insertion(ordered):
                yield Finding(
                    "time_ordered_id",
                    "P4",
                    f"ids of {table} increase with insertion order",
                    f"{table}.id",
                )
    names: list[str] = []
    for key in ctx.keys(PENDING_PREFIX) + ctx.keys(RELEASES_PREFIX):
        parts = key.split("/")
        if key.endswith(".flac"):
            names.append(parts[-1].removesuffix(".flac"))
    # Released clips are shard members (subjects ``<shard key>:clips/<clip>.flac``).
    for subject in ctx.released_digests():
        _shard, _, member = subject.partition(":")
        if member:
            names.append(member.rsplit("/", 1)[-1].removesuffix(".flac"))
    yield from _judge_ids("object names", names)


def _judge_ids(subject: str, values: Sequence[str]) -> Iterable[Finding]:
    if not values:
        return
    malformed = [value for value in values if not time_ids.is_random_hex_id(value)]
    if malformed:
        yield Finding(
            "non_random_id",
            "P4",
            f"{len(malformed)} of {len(values)} values of {subject} are not 32-hex random ids "
            f"(e.g. {malformed[0][:40]!r})",
            subject,
        )
    if time_ids.time_ordered_share(values) > 0.5:
        yield Finding(
            "time_ordered_id",
            "P4",
            f"values of {subject} are time-based UUIDs that carry their creation time",
            subject,
        )


def _column_values(engine: Engine, table: str, column: str) -> list[str]:
    quote = engine.dialect.identifier_preparer.quote
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f"SELECT {quote(column)} FROM {quote(table)} WHERE {quote(column)} IS NOT NULL"  # noqa: S608
        ).all()
    return [str(row[0]) for row in rows]


def _ids_in_insertion_order(engine: Engine, table: str) -> list[str] | None:
    """Ids in physical insertion order where the database exposes it (SQLite rowid, PG ctid)."""
    order = {"sqlite": "rowid", "postgresql": "ctid"}.get(engine.dialect.name)
    if order is None:
        return None
    quoted = engine.dialect.identifier_preparer.quote(table)
    with engine.connect() as connection:
        try:
            rows = connection.exec_driver_sql(
                f"SELECT id FROM {quoted} ORDER BY {order}"  # noqa: S608
            ).all()
        except sa.exc.OperationalError:
            # A SQLite table WITHOUT ROWID keeps rows in key order only: nothing to read.
            return None
    return [str(row[0]) for row in rows]
