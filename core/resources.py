"""The database engine and store client of a worker process, opened once per process.

Upload workers and the scheduler's job process receive URLs, not the API process's objects
(an engine or a client cannot cross a process boundary), and keep what they open for their
next task.
"""

from __future__ import annotations

from core.db import Database
from core.storage import BlobStore, open_store

_OPENED: dict[tuple[str, str], tuple[Database, BlobStore]] = {}


def process_resources(database_url: str, storage_url: str) -> tuple[Database, BlobStore]:
    key = (database_url, storage_url)
    if key not in _OPENED:
        _OPENED[key] = (Database(database_url), open_store(storage_url))
    return _OPENED[key]
