"""Audit checks of the live schema and of ids (P4): nothing says when a clip arrived.

The schema is read from the database itself (``Database.column_types``), so a column added
by hand is seen even though no model declares it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from policies import time_ids
from policies.context import CLIP_TABLES, ID_COLUMNS, PENDING_PREFIX, RELEASES_PREFIX, AuditContext
from policies.findings import Finding

# --- P4: schema and ids ----------------------------------------------------------------------


def check_timestamp_columns(ctx: AuditContext) -> Iterable[Finding]:
    """No clip or bucket table in the live schema has a date-time, time or interval column."""
    for table, columns in ctx.database.column_types(CLIP_TABLES).items():
        for column, type_name in columns:
            upper = type_name.upper()
            if "TIME" in upper or "INTERVAL" in upper:
                yield Finding(
                    "timestamp_column",
                    "P4",
                    f"column {table}.{column} has the time type {type_name}",
                    f"{table}.{column}",
                )


def check_ids(ctx: AuditContext) -> Iterable[Finding]:
    """Ids and object names are random 128-bit hex: no counters, no time-based UUIDs."""
    live = ctx.database.column_types(tuple(ID_COLUMNS))
    for table, wanted in ID_COLUMNS.items():
        present = {name for name, _type in live.get(table, [])}
        for column in wanted:
            if column in present:
                values = _column_values(ctx.engine, table, column)
                yield from _judge_ids(f"{table}.{column}", values)
        if "id" in present:
            ordered = ctx.database.ids_in_insertion_order(table)
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
    values = sa.column(column, sa.String)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(values).select_from(sa.table(table)).where(values.is_not(None))
        ).all()
    return [str(row[0]) for row in rows]
