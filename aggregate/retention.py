"""Release cycles and the retention purge.

Upholds P10: a bucket that has not reached k within ``retention_cycles`` release cycles is
purged — key destroyed (P3), rows and objects deleted — with a ``purge`` audit entry (P8).
Buckets count cycles, a coarse counter, never time (P4); the single ``release_cycles`` row
notes when it last advanced so that several replicas advance it once per interval.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aggregate.buckets import distinct_contributors, key_name, pending_clip_count
from aggregate.release import (
    DEFAULT_BATCH,
    Checkpoint,
    bucket_claim,
    drain_pending,
    no_checkpoint,
)
from aggregate.tables import PENDING_STATES, Bucket, BucketState
from core.db import Database
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
        sa.select(ReleaseCycle).where(ReleaseCycle.id == 1).with_for_update()
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


def _close_for_purge(session: Session, bucket_id: str, *, policy: Policy) -> PurgeOutcome | None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL lock_timeout = '30s'"))
    bucket = session.execute(
        sa.select(Bucket).where(Bucket.id == bucket_id).with_for_update()
    ).scalar_one_or_none()
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
    clips = pending_clip_count(session, bucket_id)
    bucket.state = BucketState.PURGED
    append_audit(
        session,
        kind="purge",
        body={
            "bucket_id": bucket.id,
            "exercise_id": bucket.exercise_id,
            "clip_count": clips,
            "contributor_count": contributors,
            "opened_cycle": bucket.opened_cycle,
            "cycle": cycle,
            "retention_cycles": policy.retention_cycles,
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
            drain_pending(
                database, store, bucket_id, batch_size=batch_size, checkpoint=checkpoint
            )
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
        outcome = purge_bucket(
            database, store, policy, bucket_id, keys=keys, batch_size=batch_size
        )
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes
