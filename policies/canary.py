"""The canary scan (P3, P4): a string planted by an auditor, e.g. a test learner's id, must not
appear in any stored object, any database row or any log file.

Findings name where a canary was found by its position on the command line, never the string
itself, so an audit report cannot leak what it was looking for.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.errors import BlobNotFound
from core.storage import BlobStore
from policies.findings import Finding

_CHUNK = 1 << 20


def scan_for_canaries(
    engine: Engine,
    store: BlobStore,
    *,
    canaries: Sequence[str],
    log_dirs: Sequence[Path],
    object_keys: Sequence[str],
) -> Iterator[Finding]:
    needles = [(index + 1, canary.encode("utf-8")) for index, canary in enumerate(canaries)]
    for key in object_keys:
        try:
            data = store.get(key)
        except BlobNotFound:
            continue
        for number in _matches(needles, [key.encode("utf-8"), data]):
            yield Finding(
                "canary_found", "P3", f"canary {number} found in stored object {key}", key
            )
    for table, column, number in _scan_database(engine, needles):
        yield Finding(
            "canary_found",
            "P3",
            f"canary {number} found in database table {table}, column {column}",
            f"{table}.{column}",
        )
    for path, number in _scan_logs(log_dirs, needles):
        yield Finding("canary_found", "P3", f"canary {number} found in log file {path}", str(path))


def _matches(needles: Sequence[tuple[int, bytes]], haystacks: Iterable[bytes]) -> list[int]:
    found: list[int] = []
    for haystack in haystacks:
        found.extend(number for number, needle in needles if needle in haystack)
    return sorted(set(found))


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


def _scan_database(
    engine: Engine, needles: Sequence[tuple[int, bytes]]
) -> Iterator[tuple[str, str, int]]:
    """Every row of every table, each value as text or bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables = sorted(sa.inspect(engine).get_table_names())
    with engine.connect() as connection:
        for table in tables:
            every_column: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(
                sa.table(table)
            )
            result = connection.execution_options(stream_results=True).execute(every_column)
            columns = list(result.keys())
            reported: set[tuple[str, int]] = set()
            for row in result:
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    for number in _matches(needles, [_as_bytes(value)]):
                        if (column, number) not in reported:
                            reported.add((column, number))
                            yield table, column, number


def _scan_logs(
    log_dirs: Sequence[Path], needles: Sequence[tuple[int, bytes]]
) -> Iterator[tuple[Path, int]]:
    for log_dir in log_dirs:
        paths = [log_dir] if log_dir.is_file() else sorted(_files_under(log_dir))
        for path in paths:
            for number in _scan_file(path, needles):
                yield path, number


def _files_under(root: Path) -> Iterator[Path]:
    for directory, _dirs, files in os.walk(root):
        for name in files:
            yield Path(directory) / name


def _scan_file(path: Path, needles: Sequence[tuple[int, bytes]]) -> list[int]:
    """Read in chunks, keeping an overlap so a canary split across chunks is still found."""
    overlap = max((len(needle) for _number, needle in needles), default=1) - 1
    found: set[int] = set()
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            window = tail + chunk
            found.update(_matches(needles, [window]))
            tail = window[-overlap:] if overlap else b""
    return sorted(found)
