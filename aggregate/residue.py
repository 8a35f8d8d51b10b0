"""Residue of deleted clips: what a delete leaves in the database's and the store's files.

Upholds P3 and P4 against an attacker holding a copy of every file the service wrote: after
pending clips are released, purged or withdrawn, their rows (ids, contributor tags) must not
linger in SQLite's WAL or free pages, nor as PostgreSQL dead tuples, and their objects (with
their write time) not in SeaweedFS volume files. ``Database.purge_residue`` and
``BlobStore.compact`` do the work; this module says which tables and when.
"""

from __future__ import annotations

import logging

from aggregate.tables import Bucket, PendingClip, Release, ReleasedClip
from core.db import Database
from core.errors import ChorusError
from core.storage import BlobStore

CLIP_TABLES = (
    Bucket.__tablename__,
    PendingClip.__tablename__,
    Release.__tablename__,
    ReleasedClip.__tablename__,
)
_logger = logging.getLogger("chorus.residue")


def purge_residue(database: Database, store: BlobStore) -> bool:
    """Empty the database's WAL or vacuum the clip tables, then compact the store.

    Returns whether both completed. A failure is logged (no clip in it) and left to the next
    purge: the deletes themselves have already happened.
    """
    complete = True
    try:
        complete = database.purge_residue(CLIP_TABLES)
    except ChorusError as exc:
        _logger.warning("database residue purge failed", extra={"code": exc.code})
        complete = False
    try:
        store.compact()
    except ChorusError as exc:
        _logger.warning("store compaction failed", extra={"code": exc.code})
        complete = False
    return complete
