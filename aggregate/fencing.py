"""Fencing of release runners: a runner writes only while its claim on the bucket holds.

The PostgreSQL advisory lock of ``aggregate.release.bucket_claim`` lives on one connection; if
the server ends that connection, the runner's other sessions carry on (the pool hands them
fresh connections) while a second runner takes the lock and claims the bucket again. So every
claim stores a fresh random ``claim_token`` on the bucket row, and every write of the release
first checks, in its own transaction and with the row locked ``FOR SHARE``, that the bucket is
still ``releasing`` under this runner's token: a runner that was taken over meets
``ClaimLost`` before its next write and stops. Object writes (copies, the manifest) run inside
``fenced``: the check, then the write while the row lock is held, so a new claim (which locks
the row ``FOR UPDATE``) waits until the write is done and no write lands after it. A finished
release's objects are never written again: its bucket is no longer ``releasing``.

On SQLite the release lock is a file lock that cannot be lost while its process lives; the
check runs all the same (``FOR SHARE`` is a no-op there).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aggregate.tables import Bucket, BucketState
from core.db import Database, with_row_lock
from core.errors import ChorusError


class ClaimLost(ChorusError):
    """Another runner claimed the bucket since this one did: this runner must stop writing."""

    code = "claim_lost"
    title = "The release claim was taken over"


def new_claim_token() -> str:
    return secrets.token_hex(16)


def hold_claim(session: Session, *, bucket_id: str, token: str) -> None:
    """Lock the bucket row ``FOR SHARE`` for this transaction; ``ClaimLost`` unless it is
    still ``releasing`` under ``token``."""
    row = session.execute(
        with_row_lock(
            sa.select(Bucket.state, Bucket.claim_token).where(Bucket.id == bucket_id),
            shared=True,
        )
    ).first()
    if row is None or row.state != BucketState.RELEASING or row.claim_token != token:
        raise ClaimLost(f"bucket {bucket_id} was claimed by another runner")


@contextlib.contextmanager
def fenced(database: Database, *, bucket_id: str, token: str) -> Iterator[None]:
    """Run the enclosed store writes while this runner's claim holds and cannot change."""
    with database.session() as session:
        hold_claim(session, bucket_id=bucket_id, token=token)
        yield
