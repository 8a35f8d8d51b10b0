"""Release cycles, the retention purge and the purge of buckets whose key was lost.

Upholds P10: a bucket that has not reached k within ``retention_cycles`` release cycles is
purged — key destroyed (P3), rows and objects deleted — with a ``purge`` audit entry (P8).
Upholds P4's crypto-shredding contract: a bucket whose memory-only key is gone (a reboot, a
Redis flush) holds clips no one can open any more, so it is purged too, with a ``purge`` entry
whose reason is ``key_lost``; a bucket lost while ``releasing`` takes its unfinished release
with it (its partial shards were never readable: readers see only ``released`` buckets).
Buckets count cycles, a coarse counter, never time (P4); the single ``release_cycles`` row
notes when it last advanced so that several replicas advance it once per interval.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aggregate.buckets import distinct_contributors, key_name, lock_bucket, pending_clip_count
from aggregate.metrics import KEY_LOST_BUCKETS, KEY_LOST_CLIPS
from aggregate.release import (
    DEFAULT_BATCH,
    Checkpoint,
    bucket_claim,
    drain_pending,
    no_checkpoint,
    release_prefix,
)
from aggregate.tables import PENDING_STATES, Bucket, BucketState, Release, ReleasedClip
from core.db import Database, with_row_lock
from core.keystore import KeyStore
from core.storage import BlobStore
from policies.audit import append as append_audit
from policies.audit import current_cycle
from policies.policy import Policy
from policies.tables import ReleaseCycle

# Scheduler jitter may bring two runs a little closer than one interval.
_INTERVAL_SLACK = 0.9


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def advance_cycle(session: Session, *, interval_s: float, now: dt.datetime) -> int | None:
    """Advance the cycle counter unless it already moved within this interval.

    Returns the new cycle number, or None when another run (or replica) advanced it recently.
    """
    row = session.execute(
        with_row_lock(sa.select(ReleaseCycle).where(ReleaseCycle.id == 1))
    ).scalar_one_or_none()
    if row is None:
        row = ReleaseCycle(id=1, current=0, advanced_at=None)
        session.add(row)
    last = row.advanced_at
    if last is not None and (now - _aware(last)).total_seconds() < interval_s * _INTERVAL_SLACK:
        return None
    row.current = (row.current or 0) + 1
    row.advanced_at = now
    session.flush()
    return row.current


@dataclass(frozen=True)
class PurgeOutcome:
    bucket_id: str
    exercise_id: str
    clip_count: int
    contributor_count: int


def expired_bucket_ids(session: Session, *, policy: Policy) -> list[str]:
    """Open or sealed buckets below k that opened ``retention_cycles`` or more cycles ago."""
    oldest_kept = current_cycle(session) - policy.retention_cycles
    candidates = session.execute(
        sa.select(Bucket.id)
        .where(Bucket.state.in_(PENDING_STATES), Bucket.opened_cycle <= oldest_kept)
        .order_by(Bucket.id)
    ).scalars()
    return [b for b in candidates if distinct_contributors(session, b) < policy.k]


def _purge(
    session: Session, bucket: Bucket, *, contributors: int, policy: Policy, **why: object
) -> PurgeOutcome:
    """Mark the locked ``bucket`` purged and append its ``purge`` audit entry (P8), which says
    ``why`` beside the counts and the policy."""
    clips = pending_clip_count(session, bucket.id)
    bucket.state = BucketState.PURGED
    append_audit(
        session,
        kind="purge",
        body={
            "bucket_id": bucket.id,
            "exercise_id": bucket.exercise_id,
            "clip_count": clips,
            "contributor_count": contributors,
            **why,
            "k": policy.k,
            "policy_hash": policy.content_hash,
        },
    )
    return PurgeOutcome(
        bucket_id=bucket.id,
        exercise_id=bucket.exercise_id,
        clip_count=clips,
        contributor_count=contributors,
    )


def _close_for_purge(session: Session, bucket_id: str, *, policy: Policy) -> PurgeOutcome | None:
    bucket = lock_bucket(session, bucket_id)
    cycle = current_cycle(session)
    if (
        bucket is None
        or bucket.state not in PENDING_STATES
        or bucket.opened_cycle > cycle - policy.retention_cycles
    ):
        return None
    contributors = distinct_contributors(session, bucket_id)
    if contributors >= policy.k:
        return None
    return _purge(
        session,
        bucket,
        contributors=contributors,
        policy=policy,
        opened_cycle=bucket.opened_cycle,
        cycle=cycle,
        retention_cycles=policy.retention_cycles,
    )


def purge_bucket(
    database: Database,
    store: BlobStore,
    policy: Policy,
    bucket_id: str,
    *,
    keys: KeyStore,
    batch_size: int = DEFAULT_BATCH,
    checkpoint: Checkpoint = no_checkpoint,
) -> PurgeOutcome | None:
    """Close an expired bucket (audited), destroy its key, then delete its clips."""
    with bucket_claim(database, bucket_id) as acquired:
        if not acquired:
            return None
        with database.session(write=True) as session:
            outcome = _close_for_purge(session, bucket_id, policy=policy)
        if outcome is not None:
            keys.delete(key_name(bucket_id))
            drain_pending(database, store, bucket_id, batch_size=batch_size, checkpoint=checkpoint)
        return outcome


def purge_expired_buckets(
    database: Database,
    store: BlobStore,
    policy: Policy,
    *,
    keys: KeyStore,
    batch_size: int = DEFAULT_BATCH,
) -> list[PurgeOutcome]:
    with database.session(write=True) as session:
        candidates = expired_bucket_ids(session, policy=policy)
    outcomes = []
    for bucket_id in candidates:
        outcome = purge_bucket(database, store, policy, bucket_id, keys=keys, batch_size=batch_size)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


# Buckets whose key must exist: a closed bucket's key was deleted on purpose.
_KEYED_STATES = (BucketState.OPEN, BucketState.SEALED, BucketState.RELEASING)


def keyless_bucket_ids(session: Session, *, keys: KeyStore) -> list[str]:
    """Buckets not yet closed whose key is gone from the key store.

    A bucket's key is stored before its row is inserted and deleted only after the bucket is
    closed, so a missing key is a lost one. A key store that does not answer raises
    ``Unavailable``: nothing is purged for an outage.
    """
    candidates = (
        session.execute(
            sa.select(Bucket.id).where(Bucket.state.in_(_KEYED_STATES)).order_by(Bucket.id)
        )
        .scalars()
        .all()
    )
    return [bucket_id for bucket_id in candidates if keys.get(key_name(bucket_id)) is None]


def _close_keyless(
    session: Session, bucket_id: str, *, keys: KeyStore, policy: Policy
) -> tuple[PurgeOutcome, str | None] | None:
    bucket = lock_bucket(session, bucket_id)
    if bucket is None or bucket.state not in _KEYED_STATES:
        return None
    if keys.get(key_name(bucket_id)) is not None:
        return None
    contributors = distinct_contributors(session, bucket_id)
    unfinished = bucket.release_id if bucket.state == BucketState.RELEASING else None
    if unfinished is not None:
        session.execute(sa.delete(ReleasedClip).where(ReleasedClip.release_id == unfinished))
        session.execute(sa.delete(Release).where(Release.id == unfinished))
        bucket.release_id = None
    outcome = _purge(session, bucket, contributors=contributors, policy=policy, reason="key_lost")
    return outcome, unfinished


def purge_keyless_buckets(
    database: Database,
    store: BlobStore,
    policy: Policy,
    *,
    keys: KeyStore,
    batch_size: int = DEFAULT_BATCH,
) -> list[PurgeOutcome]:
    """Purge every bucket whose key was lost, with an audit entry each (reason ``key_lost``).

    Nothing of such a bucket was or will be released: its clips are sealed under the lost key.
    """
    with database.session() as session:
        candidates = keyless_bucket_ids(session, keys=keys)
    outcomes = []
    for bucket_id in candidates:
        with bucket_claim(database, bucket_id) as acquired:
            if not acquired:
                continue
            with database.session(write=True) as session:
                closed = _close_keyless(session, bucket_id, keys=keys, policy=policy)
            if closed is None:
                continue
            outcome, unfinished = closed
            if unfinished is not None:
                store.delete_many(list(store.list(release_prefix(unfinished))))
            drain_pending(database, store, bucket_id, batch_size=batch_size)
        KEY_LOST_BUCKETS.inc()
        KEY_LOST_CLIPS.inc(outcome.clip_count)
        outcomes.append(outcome)
    return outcomes
