"""Two copies of one recording sent at once cannot both enter a bucket (P6).

No unique index can compare robust prints, so the uploads to one bucket check the bucket's
prints and insert their row one at a time. The test holds the first upload inside its print
check while the second arrives: without that ordering both find the bucket without the other
and both are stored, on PostgreSQL as the production layout runs it.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from aggregate.pending import DuplicateTest, PendingFacts, SanitizedAudio, put_pending_clip
from aggregate.tables import PendingClip
from core.db import Database
from core.errors import DuplicateRecording
from core.storage import BlobStore
from tests.keys import catalog_exercise, keys_for

PRINT = b"\x01" * 32


def _clip(n: int) -> SanitizedAudio:
    """Another encoding of one recording: other bytes and samples, the same robust print."""
    return SanitizedAudio(
        flac=bytes([n]) * 4000,
        facts=PendingFacts(0.5, 16000, -20.0, 16000, fingerprint=PRINT),
        samples_digest=bytes([n]) * 32,
    )


def test_two_copies_sent_at_once_store_one(database_on_both: Database, store: BlobStore) -> None:
    database = database_on_both
    with database.session(write=True) as session:
        catalog_exercise(session, "digit-8")
    both_checking = threading.Barrier(2)

    def same_print_after_the_other_arrives(new: bytes, known: list[bytes]) -> bool:
        # Each waits here for the other; if the second cannot get this far until the first
        # has committed, the first's wait ends broken and each compares what it read.
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checking.wait(timeout=2.0)
        return new in known

    def upload(n: int, clip: SanitizedAudio, is_duplicate: DuplicateTest) -> str:
        try:
            put_pending_clip(
                database,
                store,
                keys=keys_for(database),
                exercise_id="digit-8",
                learner_id=f"learner-{n}",
                clip=clip,
                max_clips_per_contributor=1,
                is_duplicate=is_duplicate,
            )
        except DuplicateRecording:
            return "duplicate"
        return "stored"

    # Another recording opens the bucket, so both copies race into the same one.
    opener = SanitizedAudio(
        flac=b"\x09" * 4000,
        facts=PendingFacts(0.5, 16000, -20.0, 16000, fingerprint=b"\x02" * 32),
        samples_digest=b"\x09" * 32,
    )
    assert upload(0, opener, lambda new, known: new in known) == "stored"
    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(
            pool.map(lambda n: upload(n, _clip(n), same_print_after_the_other_arrives), (1, 2))
        )
    assert outcomes == ["duplicate", "stored"]
    with database.session() as session:
        rows = session.execute(sa.select(sa.func.count()).select_from(PendingClip)).scalar_one()
    assert rows == 2
