"""Pending clips, sealed: how a sanitized clip enters its bucket, and how a release opens it.

Upholds P4 (crypto-shredding): a released clip's bytes, duration, loudness and rates must not
be findable on the pending side, because every trace storage keeps of a pending object or row
(WAL frames and page order, ``xmin``, ``pg_wal``, object-store ETags and times, inode numbers)
carries arrival order. So the pending audio is stored only sealed (``core.sealing``: AES-256-GCM
under a key derived from the bucket's memory-only key, padded to a size class), and so are the
row's facts and its release plan. Once the key is destroyed (release, withdrawal, purge, or
lost) no copy of the ciphertext can be joined to anything. Upholds P6: a bucket refuses the
same recording twice (exactly, by a keyed digest of its canonical samples, and re-encoded,
resampled or noised, by its sealed fingerprint), so k contributors are k distinct recordings.

The audio is sealed before the row's transaction, under the key of the bucket that is open
when the upload starts; the transaction checks that this bucket is still the open one (a
release may have claimed it, or its key been lost, meanwhile) and otherwise the upload seals
again under the new bucket's key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from aggregate.buckets import (
    PLAN_FIELD,
    BucketChanged,
    OpenBucket,
    contributor_tag,
    current_open_bucket,
    holds_request,
    insert_pending_row,
    key_name,
    lock_open_bucket,
    pending_object_key,
    request_digest,
)
from aggregate.tables import PendingClip
from core.db import Database, advisory_lock_number, transaction_lock
from core.errors import (
    ChorusError,
    ContributionLimit,
    DatabaseUnavailable,
    DuplicateRecording,
    Unavailable,
)
from core.ids import new_id
from core.keystore import KeyStore
from core.sealing import Sealer
from core.storage import BlobStore

_FACTS = struct.Struct("<dIdI")
_ATTEMPTS = 3
FACTS_FIELD = "facts"
AUDIO_FIELD = "audio"


@dataclass(frozen=True)
class PendingFacts:
    """What the pipeline knows of a sanitized clip: nothing about who or when.

    ``sample_rate`` is the stored (canonical) rate; ``source_sample_rate`` the upload's own,
    which bounds the band every clip of the release is limited to (P4: no device trait).
    ``fingerprint`` is the recording's robust print (``ingest.fingerprint``), or empty.
    """

    duration_s: float
    sample_rate: int
    loudness_dbfs: float
    source_sample_rate: int
    fingerprint: bytes = b""

    def pack(self) -> bytes:
        head = _FACTS.pack(
            self.duration_s, self.sample_rate, self.loudness_dbfs, self.source_sample_rate
        )
        return head + self.fingerprint

    @classmethod
    def unpack(cls, data: bytes) -> PendingFacts:
        duration_s, sample_rate, loudness_dbfs, source_rate = _FACTS.unpack_from(data)
        return cls(duration_s, sample_rate, loudness_dbfs, source_rate, data[_FACTS.size :])

    @property
    def band_hz(self) -> float:
        """The widest band the clip can carry: half the lower of its two rates."""
        return min(self.sample_rate, self.source_sample_rate) / 2


def recording_tag(bucket_key: bytes, samples_digest: bytes) -> str:
    """HMAC(bucket key, SHA-256 of the canonical samples): equal only for the same recording,
    and as private as a contributor tag (no one without the key can compute it)."""
    return hmac.new(bucket_key, b"recording\0" + samples_digest, hashlib.sha256).hexdigest()


def seal_facts(sealer: Sealer, row_id: str, facts: PendingFacts) -> bytes:
    return sealer.seal(facts.pack(), record=row_id, field=FACTS_FIELD)


def open_facts(sealer: Sealer, row_id: str, sealed: bytes) -> PendingFacts:
    return PendingFacts.unpack(sealer.open(sealed, record=row_id, field=FACTS_FIELD))


def plan_tag(sealer: Sealer, release_clip_id: str) -> str:
    """The pending row's mark of the released id it was planned under (a keyed digest)."""
    return sealer.digest(release_clip_id, field=PLAN_FIELD)


def open_audio(sealer: Sealer, object_key: str, sealed: bytes) -> bytes:
    return sealer.open_blob(sealed, record=object_key, field=AUDIO_FIELD)


# A fingerprint matcher: (the new clip's print, the bucket's prints) -> is it a duplicate?
DuplicateTest = Callable[[bytes, list[bytes]], bool]


def _never_duplicate(_new: bytes, _known: list[bytes]) -> bool:
    return False


# The upload's statements are built once: building a statement costs more than running it.
_BUCKET_ROW_IDS = sa.select(PendingClip.id).where(
    PendingClip.bucket_id == sa.bindparam("bucket_id")
)
_CONTRIBUTOR_CLIPS = sa.select(sa.func.count()).where(
    PendingClip.bucket_id == sa.bindparam("bucket_id"),
    PendingClip.contributor_tag == sa.bindparam("tag"),
)
_SAME_RECORDING = sa.select(PendingClip.id).where(
    PendingClip.bucket_id == sa.bindparam("bucket_id"),
    PendingClip.recording_tag == sa.bindparam("recording_tag"),
)


def prepare_pending_statements(connection: sa.Connection) -> None:
    """Run the upload's checks once, matching nothing, so a new worker has them compiled."""
    nothing = {"bucket_id": "", "tag": "", "recording_tag": ""}
    for statement in (_BUCKET_ROW_IDS, _CONTRIBUTOR_CLIPS, _SAME_RECORDING):
        connection.execute(statement, nothing).all()


class _PrintCache:
    """Opened fingerprints of the buckets this process uploaded to: an upload reads and opens
    only the rows it has not seen, so checking a bucket of n clips costs one id scan, not n
    decryptions. Forgotten when the bucket is no longer the open one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_bucket: dict[str, dict[str, bytes]] = {}

    def prints(self, connection: sa.Connection, sealer: Sealer) -> list[bytes]:
        bucket_id = sealer.bucket_id
        ids = connection.execute(_BUCKET_ROW_IDS, {"bucket_id": bucket_id}).scalars().all()
        with self._lock:
            known = dict(self._by_bucket.get(bucket_id, {}))
        missing = [row_id for row_id in ids if row_id not in known]
        if missing:
            rows = connection.execute(
                sa.select(PendingClip.id, PendingClip.sealed_facts).where(
                    PendingClip.id.in_(missing)
                )
            ).all()
            for row in rows:
                known[row.id] = open_facts(sealer, row.id, row.sealed_facts).fingerprint
        current = {row_id: known[row_id] for row_id in ids if row_id in known}
        with self._lock:
            # One bucket per exercise is open at a time; a process keeps the few it serves.
            if len(self._by_bucket) > 256:
                self._by_bucket.clear()
            self._by_bucket[bucket_id] = current
        return [print_ for print_ in current.values() if print_]


_PRINTS = _PrintCache()

# How long a process remembers the open bucket it found for an exercise. The upload's
# transaction checks that it is still the open one (``lock_open_bucket``), and its key is
# looked up in the key store on every upload, so a released bucket or a lost key is noticed at
# once either way.
OPEN_BUCKET_TTL_S = 60.0


class _OpenBuckets:
    """The open bucket (and key) of each exercise this process uploads to, for a second: an
    upload then costs one transaction, not a read and a transaction."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str], tuple[float, OpenBucket]] = {}

    def get(self, database: Database, exercise_id: str, *, keys: KeyStore) -> OpenBucket:
        name = (database.url, exercise_id)
        now = time.monotonic()
        with self._lock:
            cached = self._found.get(name)
        fresh = cached is not None and now - cached[0] < OPEN_BUCKET_TTL_S
        if cached is not None and fresh and keys.get(key_name(cached[1].id)) == cached[1].key:
            return cached[1]
        bucket = current_open_bucket(database, exercise_id, keys=keys)
        with self._lock:
            if len(self._found) > 4096:
                self._found.clear()
            self._found[name] = (now, bucket)
        return bucket

    def forget(self, database: Database, exercise_id: str) -> None:
        with self._lock:
            self._found.pop((database.url, exercise_id), None)


_OPEN_BUCKETS = _OpenBuckets()


@dataclass(frozen=True)
class SanitizedAudio:
    """A sanitized clip as the pending side takes it: its canonical FLAC, its facts and the
    SHA-256 of its canonical samples (kept only in memory, then keyed)."""

    flac: bytes
    facts: PendingFacts
    samples_digest: bytes


def put_pending_clip(
    database: Database,
    store: BlobStore,
    *,
    keys: KeyStore,
    exercise_id: str,
    learner_id: str,
    clip: SanitizedAudio,
    max_clips_per_contributor: int,
    in_transaction: Callable[[sa.Connection], None] | None = None,
    is_duplicate: DuplicateTest = _never_duplicate,
    request_id: bytes | None = None,
) -> str | None:
    """Seal the clip under its exercise's open bucket's key, store it, record its row.

    ``in_transaction`` runs in the row's transaction, after the bucket row is locked (the
    upload re-checks eligibility and withdrawal there). Raises ContributionLimit,
    DuplicateRecording, or whatever ``in_transaction`` raises; the object is deleted then. An
    object whose row write ended with the database unreachable (the commit may have landed)
    is left to the orphan sweeper. Returns the pending object's key, or None when
    ``request_id`` (an Idempotency-Key upload) names a request the bucket holds already: a
    retry of a stored upload stores nothing, before any cap or duplicate check could refuse it.
    """
    for _attempt in range(_ATTEMPTS):
        bucket = _OPEN_BUCKETS.get(database, exercise_id, keys=keys)
        sealer = Sealer(bucket.key, bucket_id=bucket.id)
        object_key = pending_object_key()
        row_id = new_id()
        store.put(object_key, sealer.seal_blob(clip.flac, record=object_key, field=AUDIO_FIELD))
        row = sealed_pending_row(
            sealer,
            bucket_key=bucket.key,
            row_id=row_id,
            learner_id=learner_id,
            object_key=object_key,
            clip=clip,
            max_clips_per_contributor=max_clips_per_contributor,
        )
        if request_id is not None:
            row["request_digest"] = request_digest(bucket.key, request_id)

        try:
            with database.connection(write=True) as connection:
                lock_open_bucket(connection, exercise_id, expected=bucket.id)
                if in_transaction is not None:
                    in_transaction(connection)
                digest = row.get("request_digest")
                stored_before = digest is not None and holds_request(
                    connection, bucket.id, str(digest)
                )
                if not stored_before:
                    _require_new_recording(connection, sealer, row, clip.facts, is_duplicate)
                    stored_before = not insert_pending_row(connection, row)
            if stored_before:
                _delete_quietly(store, object_key)  # the request's first object is the one kept
                return None
            return object_key
        except BucketChanged:
            _OPEN_BUCKETS.forget(database, exercise_id)
            _delete_quietly(store, object_key)
            continue
        except DatabaseUnavailable:
            raise
        except BaseException:
            _delete_quietly(store, object_key)
            raise
    raise Unavailable("the exercise's bucket kept changing; try again")


def sealed_pending_row(
    sealer: Sealer,
    *,
    bucket_key: bytes,
    row_id: str,
    learner_id: str,
    object_key: str,
    clip: SanitizedAudio,
    max_clips_per_contributor: int,
) -> dict[str, object]:
    """The values of a pending row (``aggregate.buckets.insert_pending_row``): keyed tags and
    sealed facts, nothing in the clear that a release publishes."""
    return {
        "id": row_id,
        "bucket_id": sealer.bucket_id,
        "tag": contributor_tag(bucket_key, learner_id),
        "object_key": object_key,
        "recording_tag": recording_tag(bucket_key, clip.samples_digest),
        "sealed_facts": seal_facts(sealer, row_id, clip.facts),
        "request_digest": None,
        "max_slots": max_clips_per_contributor,
    }


def _require_new_recording(
    connection: sa.Connection,
    sealer: Sealer,
    row: dict[str, object],
    facts: PendingFacts,
    is_duplicate: DuplicateTest,
) -> None:
    """Raise DuplicateRecording if the bucket holds this recording already; a contributor at
    their cap hears ContributionLimit first (their own retake is not someone else's copy)."""
    taken = connection.execute(
        _CONTRIBUTOR_CLIPS, {"bucket_id": sealer.bucket_id, "tag": row["tag"]}
    ).scalar_one()
    if taken >= int(str(row["max_slots"])):
        raise ContributionLimit()
    same = connection.execute(
        _SAME_RECORDING, {"bucket_id": sealer.bucket_id, "recording_tag": row["recording_tag"]}
    ).first()
    if same is not None:
        raise DuplicateRecording("this recording is already waiting in the exercise's batch")
    if not facts.fingerprint:
        return
    # No unique index can compare robust prints: uploads to one bucket check and insert one
    # at a time (until commit), so two copies sent at once cannot both find the bucket without
    # the other. PostgreSQL: a lock of the bucket's own; SQLite's writers take turns anyway.
    transaction_lock(connection, advisory_lock_number(f"recording-prints:{sealer.bucket_id}"))
    if is_duplicate(facts.fingerprint, _PRINTS.prints(connection, sealer)):
        raise DuplicateRecording(
            "a recording that sounds the same is already waiting in the exercise's batch"
        )


def _delete_quietly(store: BlobStore, object_key: str) -> None:
    # A failed delete leaves an object without a row, which the orphan sweeper removes.
    with contextlib.suppress(ChorusError, OSError):
        store.delete(object_key)
