"""The orphan sweeper: deletes pending objects that no pending row refers to.

An upload writes its object first and its row a moment later, so an object seen without a row
may simply be one whose transaction has not committed yet. The sweeper therefore deletes an
object only when it had no row in two consecutive passes, which are ``sweep_interval_s``
(at least 10 s) apart: far longer than any upload takes between its two writes. The suspects
of the last pass live in this process's memory only; after a restart the first pass merely
collects them again. No time is stored anywhere (P4).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

import sqlalchemy as sa

from aggregate.buckets import PENDING_PREFIX
from aggregate.tables import PendingClip
from core.db import Database
from core.errors import ChorusError
from core.storage import BlobStore
from ingest.metrics import ORPHANS_SWEPT

_logger = logging.getLogger("chorus.ingest.sweeper")
_QUERY_BATCH = 500


class OrphanSweeper:
    """Call ``run()`` periodically; each call deletes orphans already suspected last time."""

    def __init__(self, *, database: Database, store: BlobStore) -> None:
        self.database = database
        self.store = store
        self._suspects: set[str] = set()

    def run(self) -> int:
        """One pass; returns how many objects it deleted."""
        keys = set(self.store.list(PENDING_PREFIX))
        orphans = keys - self._keys_with_rows(keys)
        confirmed = orphans & self._suspects
        deleted = 0
        for key in confirmed:
            with contextlib.suppress(ChorusError, OSError):
                self.store.delete(key)
                deleted += 1
        self._suspects = orphans - confirmed
        if deleted:
            ORPHANS_SWEPT.inc(deleted)
            _logger.info("swept orphan pending objects", extra={"count": deleted})
        return deleted

    def _keys_with_rows(self, keys: Iterable[str]) -> set[str]:
        ordered = sorted(keys)
        found: set[str] = set()
        with self.database.session() as session:
            for start in range(0, len(ordered), _QUERY_BATCH):
                batch = ordered[start : start + _QUERY_BATCH]
                found.update(
                    session.execute(
                        sa.select(PendingClip.object_key).where(PendingClip.object_key.in_(batch))
                    ).scalars()
                )
        return found
