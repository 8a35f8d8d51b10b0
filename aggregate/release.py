"""Releasing a bucket that reached k: ``open → releasing → released``, safe to kill at any step.

Upholds P6 (only a bucket with clips of ≥ k distinct contributors is released, re-counted just
before it is marked released, and readers see a release only once its bucket is ``released``),
P5 (a bucket whose exercise has fallen below ``min_exercise_learners`` is retired, not
released), P3 (the bucket key, held only in memory, is deleted once the bucket is released) and
P4 (released clips get names and positions from a fresh random source, never derived from a
pending id or a key; the batch carries only its release day).

Steps, each safe to repeat, so a run killed anywhere is finished by the next one:

1. claim — one short transaction turns a ready ``open`` or ``sealed`` bucket into
   ``releasing`` and creates its Release row; new uploads then open a fresh bucket.
2. plan + copy — pending rows are read in batches; a clip not yet planned gets a fresh random
   released id and sort position, written to its ``released_clips`` row and to the pending
   row's ``release_clip_id`` in one transaction, so a resumed run copies it under the same
   name; then the pending object is copied to ``releases/<release>/clips/<clip>.flac`` (a copy
   overwrites with the same bytes). Under a policy with ``voice_anonymization`` the released
   bytes are ``VoiceAnonymizer.released_audio`` of the pending bytes instead (a fresh random
   transform each time, so a resumed run overwrites with another anonymized version).
   Released copies whose pending clip was withdrawn meanwhile are removed before the manifest.
3. manifest — written last among the release's objects, streamed through a temporary file.
4. finalize — one transaction checks that every pending row is planned and that ≥ k distinct
   contributors remain, marks the bucket ``released`` and appends the ``release`` audit entry
   (P8); then the bucket key is deleted from the key store. A bucket that fell below k through
   withdrawals is not released: its release is undone and the bucket is sealed.
5. clean — pending objects are deleted, then their rows, batch by batch; a re-run deletes what
   a killed one left.

On PostgreSQL a session advisory lock per bucket, held for the whole release, keeps two runners
off one bucket; a crashed runner's lock dies with its connection, so the next run resumes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import itertools
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from aggregate.buckets import distinct_contributors, key_name, pending_clip_count
from aggregate.statistics import BatchStatistics
from aggregate.tables import (
    CLOSED_STATES,
    PENDING_STATES,
    Bucket,
    BucketState,
    PendingClip,
    Release,
    ReleasedClip,
)
from core.db import Database
from core.errors import BlobNotFound, ChorusError
from core.ids import new_id
from core.keystore import KeyStore
from core.storage import BlobStore
from exercises.tables import ExerciseUsage
from policies.audit import append as append_audit
from policies.policy import Policy
from policies.voice import VoiceAnonymizer

RELEASE_PREFIX = "releases/"
DEFAULT_BATCH = 1000
STEPS = ("claimed", "planned", "copied", "manifest", "finalized", "cleaned")

_LOCK_NOT_AVAILABLE = "55P03"
STORE_WORKERS = 8
T = TypeVar("T")

Checkpoint = Callable[[str], None]
_logger = logging.getLogger("chorus.release")


def no_checkpoint(_step: str) -> None:
    return None


def release_prefix(release_id: str) -> str:
    return f"{RELEASE_PREFIX}{release_id}/"


def manifest_key(release_id: str) -> str:
    return f"{release_prefix(release_id)}manifest.json"


def clip_key(release_id: str, clip_id: str) -> str:
    return f"{release_prefix(release_id)}clips/{clip_id}.flac"


@dataclass(frozen=True)
class ReleaseOutcome:
    bucket_id: str
    release_id: str
    exercise_id: str
    clip_count: int
    contributor_count: int


@dataclass(frozen=True)
class _PlannedClip:
    clip_id: str
    source_key: str
    object_key: str
    duration_s: float
    sample_rate: int
    loudness_dbfs: float


class _UnplannedClips(ChorusError):
    """Pending rows appeared after the plan was made; the plan pass runs again."""


# --- candidates ---------------------------------------------------------------------------


def ready_bucket_ids(session: Session, *, k: int) -> list[str]:
    """Open or sealed buckets holding clips of at least ``k`` distinct contributors."""
    return list(
        session.execute(
            sa.select(PendingClip.bucket_id)
            .join(Bucket, Bucket.id == PendingClip.bucket_id)
            .where(Bucket.state.in_(PENDING_STATES))
            .group_by(PendingClip.bucket_id)
            .having(sa.func.count(sa.distinct(PendingClip.contributor_tag)) >= k)
            .order_by(PendingClip.bucket_id)
        ).scalars()
    )


def unfinished_bucket_ids(session: Session) -> list[str]:
    """Buckets a killed run left behind: ``releasing``, or done but with pending leftovers."""
    releasing = session.execute(
        sa.select(Bucket.id).where(Bucket.state == BucketState.RELEASING).order_by(Bucket.id)
    ).scalars()
    leftovers = session.execute(
        sa.select(Bucket.id)
        .where(
            Bucket.state.in_(CLOSED_STATES),
            sa.exists().where(PendingClip.bucket_id == Bucket.id),
        )
        .order_by(Bucket.id)
    ).scalars()
    return [*releasing, *leftovers]


# --- exclusive claim ----------------------------------------------------------------------


def _lock_number(bucket_id: str) -> int:
    digest = hashlib.sha256(f"chorus-release:{bucket_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def bucket_claim(database: Database, bucket_id: str) -> Iterator[bool]:
    """Yields True while this runner alone works on the bucket.

    PostgreSQL: a session advisory lock on a dedicated connection, like ``FOR UPDATE SKIP
    LOCKED`` but held across the release's many short transactions and released by the server
    when a killed runner's connection drops. SQLite: one bucket at a time for all runners (the
    job processes of several ``chorus serve`` workers, a ``chorus release``), on a file lock
    beside the database that a killed runner's process lets go of.
    """
    if not database.is_postgres:
        with database.sidecar_lock("release") as acquired:
            yield acquired
        return
    number = _lock_number(bucket_id)
    with database.engine.connect() as connection:
        acquired = bool(
            connection.execute(sa.text("SELECT pg_try_advisory_lock(:n)"), {"n": number}).scalar()
        )
        connection.commit()
        try:
            yield acquired
        finally:
            if acquired:
                with contextlib.suppress(DBAPIError):
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:n)"), {"n": number})
                    connection.commit()


def _lock_bucket(session: Session, bucket_id: str) -> Bucket | None:
    """The bucket row, locked for the transaction (waits for uploads holding it FOR SHARE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL lock_timeout = '30s'"))
    return session.execute(
        sa.select(Bucket).where(Bucket.id == bucket_id).with_for_update()
    ).scalar_one_or_none()


# --- the steps ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    bucket_id: str
    release_id: str
    exercise_id: str
    language: str | None
    release_day: dt.date
    k_in_force: int
    policy_hash: str
    voice: VoiceAnonymizer


@dataclass(frozen=True)
class _Retire:
    """A ready bucket whose exercise is no longer common enough to release (P5)."""

    bucket_id: str
    exercise_id: str
    learners: int | None


def _claim(
    session: Session, bucket_id: str, *, policy: Policy, today: dt.date
) -> _Claim | _Retire | None:
    bucket = _lock_bucket(session, bucket_id)
    if bucket is None:
        return None
    if bucket.state in PENDING_STATES:
        if distinct_contributors(session, bucket_id) < policy.k:
            return None
        usage = session.execute(
            sa.select(ExerciseUsage.learners, ExerciseUsage.language).where(
                ExerciseUsage.exercise_id == bucket.exercise_id
            )
        ).first()
        if usage is None or usage.learners < policy.min_exercise_learners:
            return _retire(session, bucket, policy=policy, usage=usage)
        language = usage.language
        release = Release(
            id=new_id(),
            bucket_id=bucket.id,
            exercise_id=bucket.exercise_id,
            language=language,
            release_day=today,
            clip_count=0,
            contributor_count=0,
            k_in_force=policy.k,
            policy_hash=policy.content_hash,
            manifest_key="",
            statistics="{}",
        )
        release.manifest_key = manifest_key(release.id)
        session.add(release)
        bucket.state = BucketState.RELEASING
        bucket.release_id = release.id
        session.flush()
    elif bucket.state == BucketState.RELEASING and bucket.release_id is not None:
        found = session.get(Release, bucket.release_id)
        if found is None:
            raise ChorusError(f"bucket {bucket.id} is releasing without its release row")
        release = found
    else:
        return None
    return _Claim(
        bucket_id=bucket.id,
        release_id=release.id,
        exercise_id=release.exercise_id,
        language=release.language,
        release_day=release.release_day,
        k_in_force=release.k_in_force,
        policy_hash=release.policy_hash,
        voice=VoiceAnonymizer.from_policy(policy),
    )


def _retire(session: Session, bucket: Bucket, *, policy: Policy, usage: Any) -> _Retire:
    """Close a bucket whose exercise fell below ``min_exercise_learners``: purged, audited."""
    contributors = distinct_contributors(session, bucket.id)
    clips = pending_clip_count(session, bucket.id)
    bucket.state = BucketState.PURGED
    learners = None if usage is None else int(usage.learners)
    append_audit(
        session,
        kind="purge",
        body={
            "bucket_id": bucket.id,
            "exercise_id": bucket.exercise_id,
            "clip_count": clips,
            "contributor_count": contributors,
            "reason": "exercise_below_min_learners",
            "exercise_learners": learners,
            "min_exercise_learners": policy.min_exercise_learners,
            "k": policy.k,
            "policy_hash": policy.content_hash,
        },
    )
    return _Retire(bucket_id=bucket.id, exercise_id=bucket.exercise_id, learners=learners)


def _plan(claim: _Claim, row: Any, clip_id: str) -> _PlannedClip:
    """Where a planned pending clip is copied: under the random id its plan gave it."""
    return _PlannedClip(
        clip_id=clip_id,
        source_key=row.object_key,
        object_key=clip_key(claim.release_id, clip_id),
        duration_s=row.duration_s,
        sample_rate=row.sample_rate,
        loudness_dbfs=row.loudness_dbfs,
    )


def _in_parallel(action: Callable[[T], object], items: list[T]) -> None:
    """Run store calls of one batch concurrently: they wait on I/O (fsync, HTTP), not the CPU.
    The first failure is raised after the batch's other calls have finished."""
    with ThreadPoolExecutor(max_workers=STORE_WORKERS) as pool:
        for _ in pool.map(action, items):
            pass


def _copy(
    store: BlobStore,
    planned: _PlannedClip,
    *,
    voice: VoiceAnonymizer,
    missing: list[_PlannedClip],
) -> None:
    try:
        if voice.enabled:
            store.put(planned.object_key, voice.released_audio(store.get(planned.source_key)))
        else:
            store.copy(planned.source_key, planned.object_key)
    except BlobNotFound:
        # Only a clip already copied may have lost its pending original, or one withdrawn
        # meanwhile (its row is gone too; ``_prune_withdrawn`` removes its plan).
        if not store.exists(planned.object_key):
            missing.append(planned)


def _require_withdrawn(database: Database, missing: list[_PlannedClip]) -> None:
    """A pending original may be missing only if its clip was withdrawn while we copied."""
    if not missing:
        return
    with database.session(write=True) as session:
        still_pending = session.execute(
            sa.select(sa.func.count()).select_from(PendingClip).where(
                PendingClip.object_key.in_([planned.source_key for planned in missing])
            )
        ).scalar_one()
    if still_pending:
        raise BlobNotFound(f"{still_pending} pending original(s) of this release are missing")


_ROW_COLUMNS = (
    PendingClip.id,
    PendingClip.object_key,
    PendingClip.duration_s,
    PendingClip.sample_rate,
    PendingClip.loudness_dbfs,
    PendingClip.release_clip_id,
)


def _plan_batch(session: Session, claim: _Claim, rows: list[Any]) -> list[_PlannedClip]:
    """Give every unplanned row a fresh random released id and position (P4): nothing about
    the released clip is derived from the pending row, its id, its tag or any key."""
    fresh = [row for row in rows if row.release_clip_id is None]
    names = {row.id: new_id() for row in fresh}
    if fresh:
        session.execute(
            sa.insert(ReleasedClip),
            [
                {
                    "id": names[row.id],
                    "release_id": claim.release_id,
                    "position": secrets.randbits(31),
                    "object_key": clip_key(claim.release_id, names[row.id]),
                    "duration_s": row.duration_s,
                    "sample_rate": row.sample_rate,
                    "loudness_dbfs": row.loudness_dbfs,
                }
                for row in fresh
            ],
        )
        pending = cast(sa.Table, PendingClip.__table__)
        session.execute(
            sa.update(pending)
            .where(pending.c.id == sa.bindparam("pending_id"))
            .values(release_clip_id=sa.bindparam("clip_id")),
            [{"pending_id": row.id, "clip_id": names[row.id]} for row in fresh],
        )
    return [_plan(claim, row, row.release_clip_id or names[row.id]) for row in rows]


def _plan_and_copy(
    database: Database,
    store: BlobStore,
    claim: _Claim,
    *,
    batch_size: int,
    checkpoint: Checkpoint,
) -> BatchStatistics:
    stats = BatchStatistics()
    after = ""
    while True:
        with database.session(write=True) as session:
            rows = session.execute(
                sa.select(*_ROW_COLUMNS)
                .where(PendingClip.bucket_id == claim.bucket_id, PendingClip.id > after)
                .order_by(PendingClip.id)
                .limit(batch_size)
            ).all()
            if not rows:
                break
            plan = _plan_batch(session, claim, list(rows))
        checkpoint("planned")
        missing: list[_PlannedClip] = []
        _in_parallel(functools.partial(_copy, store, voice=claim.voice, missing=missing), plan)
        _require_withdrawn(database, missing)
        for planned in plan:
            stats.add(
                duration_s=planned.duration_s,
                sample_rate=planned.sample_rate,
                loudness_dbfs=planned.loudness_dbfs,
            )
        checkpoint("copied")
        after = rows[-1].id
    return stats


def _prune_withdrawn(
    database: Database, store: BlobStore, claim: _Claim, *, batch_size: int
) -> None:
    """Remove released copies that no pending clip stands behind any more (withdrawn while the
    release ran, or planned by an older run): their rows, then their objects. Objects are
    listed and checked a batch at a time, so memory stays flat in the bucket's size."""
    planned = sa.select(PendingClip.release_clip_id).where(
        PendingClip.bucket_id == claim.bucket_id, PendingClip.release_clip_id.is_not(None)
    )
    with database.session(write=True) as session:
        stale = list(
            session.execute(
                sa.delete(ReleasedClip)
                .where(ReleasedClip.release_id == claim.release_id)
                .where(ReleasedClip.id.not_in(planned))
                .returning(ReleasedClip.object_key)
            ).scalars()
        )
    _in_parallel(store.delete, stale)
    listing = iter(store.list(f"{release_prefix(claim.release_id)}clips/"))
    while keys := list(itertools.islice(listing, batch_size)):
        with database.session(write=True) as session:
            kept = set(
                session.execute(
                    sa.select(ReleasedClip.object_key).where(ReleasedClip.object_key.in_(keys))
                ).scalars()
            )
        _in_parallel(store.delete, [key for key in keys if key not in kept])


def iter_released_clips(
    database: Database, release_id: str, *, batch_size: int = DEFAULT_BATCH
) -> Iterator[ReleasedClip]:
    """A release's clips in their shuffled order, read in batches (keyset on position, id)."""
    last: tuple[int, str] | None = None
    while True:
        with database.session(write=True) as session:
            query = sa.select(ReleasedClip).where(ReleasedClip.release_id == release_id)
            if last is not None:
                query = query.where(
                    sa.tuple_(ReleasedClip.position, ReleasedClip.id) > sa.tuple_(*last)
                )
            rows = (
                session.execute(
                    query.order_by(ReleasedClip.position, ReleasedClip.id).limit(batch_size)
                )
                .scalars()
                .all()
            )
        if not rows:
            return
        yield from rows
        last = (rows[-1].position, rows[-1].id)


def manifest_header(claim: _Claim, stats: BatchStatistics) -> dict[str, Any]:
    return {
        "release_id": claim.release_id,
        "exercise_id": claim.exercise_id,
        "language": claim.language,
        "release_day": claim.release_day.isoformat(),
        "clip_count": stats.clip_count,
        "contributor_count": stats.contributor_count,
        "k": claim.k_in_force,
        "policy_hash": claim.policy_hash,
        "voice_anonymization": claim.voice.manifest_entry(),
        "statistics": stats.to_json(),
    }


def _write_manifest(
    database: Database,
    store: BlobStore,
    claim: _Claim,
    stats: BatchStatistics,
    *,
    batch_size: int,
) -> None:
    """Stream the manifest into a temporary file, then store it: memory stays flat."""
    fd, path = tempfile.mkstemp(prefix="chorus-manifest-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            header = json.dumps(manifest_header(claim, stats), separators=(",", ":"))
            out.write(header[:-1] + ',"clips":[')
            _write_clip_entries(out, iter_released_clips(database, claim.release_id,
                                                         batch_size=batch_size))
            out.write("]}")
        store.put_file(manifest_key(claim.release_id), Path(path))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _write_clip_entries(out: TextIO, clips: Iterator[ReleasedClip]) -> None:
    for index, clip in enumerate(clips):
        entry = {
            "clip_id": clip.id,
            "position": index,
            "duration_s": clip.duration_s,
            "sample_rate": clip.sample_rate,
            "loudness_dbfs": clip.loudness_dbfs,
        }
        out.write(("," if index else "") + json.dumps(entry, separators=(",", ":")))


Finalized = Literal["released", "not_ours", "below_k"]


def _finalize(
    session: Session, claim: _Claim, stats: BatchStatistics
) -> tuple[Finalized, list[str]]:
    """Mark released and audit; or, when withdrawals left fewer than k contributors, undo the
    release and seal the bucket (returning the released copies to delete)."""
    bucket = _lock_bucket(session, claim.bucket_id)
    if (
        bucket is None
        or bucket.state != BucketState.RELEASING
        or bucket.release_id != claim.release_id
    ):
        return "not_ours", []
    stats.contributor_count = distinct_contributors(session, claim.bucket_id)
    if stats.contributor_count < claim.k_in_force:
        return "below_k", _undo_claim(session, bucket, claim)
    pending = pending_clip_count(session, claim.bucket_id)
    planned = session.execute(
        sa.select(sa.func.count()).select_from(ReleasedClip).where(
            ReleasedClip.release_id == claim.release_id
        )
    ).scalar_one()
    if pending != planned or pending != stats.clip_count:
        raise _UnplannedClips("pending clips changed while the release was planned")
    release = session.get(Release, claim.release_id)
    assert release is not None
    release.clip_count = stats.clip_count
    release.contributor_count = stats.contributor_count
    release.statistics = json.dumps(stats.to_json(), separators=(",", ":"))
    bucket.state = BucketState.RELEASED
    append_audit(
        session,
        kind="release",
        body={
            "bucket_id": claim.bucket_id,
            "release_id": claim.release_id,
            "exercise_id": claim.exercise_id,
            "clip_count": stats.clip_count,
            "contributor_count": stats.contributor_count,
            "k": claim.k_in_force,
            "policy_hash": claim.policy_hash,
            "release_day": claim.release_day.isoformat(),
        },
    )
    return "released", []


def _undo_claim(session: Session, bucket: Bucket, claim: _Claim) -> list[str]:
    """Put a claimed bucket that fell below k back among the pending ones, sealed: a fresh
    bucket may have opened for its exercise meanwhile. Returns the copies to delete."""
    copies = list(
        session.execute(
            sa.delete(ReleasedClip)
            .where(ReleasedClip.release_id == claim.release_id)
            .returning(ReleasedClip.object_key)
        ).scalars()
    )
    session.execute(
        sa.update(PendingClip)
        .where(PendingClip.bucket_id == claim.bucket_id)
        .values(release_clip_id=None)
    )
    session.execute(sa.delete(Release).where(Release.id == claim.release_id))
    bucket.state = BucketState.SEALED
    bucket.release_id = None
    return [*copies, manifest_key(claim.release_id)]


def drain_pending(
    database: Database,
    store: BlobStore,
    bucket_id: str,
    *,
    batch_size: int = DEFAULT_BATCH,
    checkpoint: Checkpoint = no_checkpoint,
) -> int:
    """Delete a closed bucket's pending objects, then their rows; returns how many."""
    deleted = 0
    while True:
        with database.session(write=True) as session:
            rows = session.execute(
                sa.select(PendingClip.id, PendingClip.object_key)
                .where(PendingClip.bucket_id == bucket_id)
                .order_by(PendingClip.id)
                .limit(batch_size)
            ).all()
        if not rows:
            return deleted
        _in_parallel(store.delete, [row.object_key for row in rows])
        checkpoint("cleaned")
        with database.session(write=True) as session:
            session.execute(
                sa.delete(PendingClip).where(PendingClip.id.in_([row.id for row in rows]))
            )
        deleted += len(rows)


# --- one bucket, many buckets -----------------------------------------------------------------


def release_bucket(
    database: Database,
    store: BlobStore,
    policy: Policy,
    bucket_id: str,
    *,
    keys: KeyStore,
    today: dt.date | None = None,
    batch_size: int = DEFAULT_BATCH,
    checkpoint: Checkpoint = no_checkpoint,
) -> ReleaseOutcome | None:
    """Release (or finish releasing, or clean up after, or retire) one bucket.

    Returns the outcome when this call brought the bucket to ``released``; None when the bucket
    was not ready, was taken by another runner, fell below k, was retired (P5) or only needed
    cleaning. The bucket's key is deleted from ``keys`` once the bucket is closed.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    with bucket_claim(database, bucket_id) as acquired:
        if not acquired:
            return None
        try:
            with database.session(write=True) as session:
                claim = _claim(session, bucket_id, policy=policy, today=today)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                return None  # uploads kept the row busy; the next run tries again
            raise
        outcome: ReleaseOutcome | None = None
        if isinstance(claim, _Claim):
            checkpoint("claimed")
            outcome = _release_claimed(
                database, store, claim, batch_size=batch_size, checkpoint=checkpoint
            )
        if _is_closed(database, bucket_id):
            keys.delete(key_name(bucket_id))
            drain_pending(
                database, store, bucket_id, batch_size=batch_size, checkpoint=checkpoint
            )
        return outcome


def _is_closed(database: Database, bucket_id: str) -> bool:
    """Released or purged: its pending leftovers may go. Never true for an open bucket."""
    with database.session(write=True) as session:
        state = session.execute(
            sa.select(Bucket.state).where(Bucket.id == bucket_id)
        ).scalar_one_or_none()
    return state in CLOSED_STATES


def _release_claimed(
    database: Database,
    store: BlobStore,
    claim: _Claim,
    *,
    batch_size: int,
    checkpoint: Checkpoint,
) -> ReleaseOutcome | None:
    for _attempt in range(3):
        stats = _plan_and_copy(
            database, store, claim, batch_size=batch_size, checkpoint=checkpoint
        )
        _prune_withdrawn(database, store, claim, batch_size=batch_size)
        with database.session(write=True) as session:
            stats.contributor_count = distinct_contributors(session, claim.bucket_id)
        _write_manifest(database, store, claim, stats, batch_size=batch_size)
        checkpoint("manifest")
        try:
            with database.session(write=True) as session:
                finished, undone = _finalize(session, claim, stats)
        except _UnplannedClips:
            continue
        _in_parallel(store.delete, undone)
        if finished != "released":
            return None
        checkpoint("finalized")
        return ReleaseOutcome(
            bucket_id=claim.bucket_id,
            release_id=claim.release_id,
            exercise_id=claim.exercise_id,
            clip_count=stats.clip_count,
            contributor_count=stats.contributor_count,
        )
    raise ChorusError(f"bucket {claim.bucket_id} kept changing while it was released")


def release_ready_buckets(
    database: Database,
    store: BlobStore,
    policy: Policy,
    *,
    keys: KeyStore,
    today: dt.date | None = None,
    batch_size: int = DEFAULT_BATCH,
    checkpoint: Checkpoint = no_checkpoint,
) -> list[ReleaseOutcome]:
    """Finish what killed runs left, then release every bucket that reached k."""
    with database.session(write=True) as session:
        candidates = unfinished_bucket_ids(session) + ready_bucket_ids(session, k=policy.k)
    outcomes: list[ReleaseOutcome] = []
    failures: list[ChorusError] = []
    for bucket_id in dict.fromkeys(candidates):
        try:
            outcome = release_bucket(
                database,
                store,
                policy,
                bucket_id,
                keys=keys,
                today=today,
                batch_size=batch_size,
                checkpoint=checkpoint,
            )
        except ChorusError as exc:
            # One bucket's trouble must not hold back the others; it stays 'releasing' and
            # the next run resumes it. The first failure is raised once all were tried.
            _logger.warning("bucket release failed", extra={"code": exc.code})
            failures.append(exc)
            continue
        if outcome is not None:
            outcomes.append(outcome)
    if outcomes:
        _logger.info(
            "released buckets",
            extra={"buckets": len(outcomes), "clips": sum(o.clip_count for o in outcomes)},
        )
    if failures:
        raise failures[0]
    return outcomes
