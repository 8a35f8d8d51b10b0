"""The database engine, store client and key store of a worker process, opened once per process.

Upload workers and the scheduler's job process receive URLs, not the API process's objects
(an engine or a client cannot cross a process boundary), and keep what they open for their
next task.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.db import Database
from core.keystore import KeyStore, open_key_store
from core.storage import BlobStore, open_store


@dataclass(frozen=True)
class Resources:
    database: Database
    store: BlobStore
    keys: KeyStore


_OPENED: dict[tuple[str, str, str], Resources] = {}


def process_resources(database_url: str, storage_url: str, key_store_url: str) -> Resources:
    key = (database_url, storage_url, key_store_url)
    if key not in _OPENED:
        _OPENED[key] = Resources(
            database=Database(database_url),
            store=open_store(storage_url),
            keys=open_key_store(key_store_url, database_url=database_url),
        )
    return _OPENED[key]
