"""The scheduled release cycle: advance the cycle, release ready buckets, purge expired ones.

Run by APScheduler for ``chorus serve`` in the scheduler's job process (every replica may run
it: claims and the cycle row make that safe) and on demand by ``chorus release``. Each cycle
first records the policy it runs under in the audit log (P8) unless the last recorded policy is
the same, so no release is ever made under a policy the log does not hold. Logs carry counts
only, never a clip (P4).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import multiprocessing
from dataclasses import dataclass, field

import sqlalchemy as sa
from apscheduler.schedulers.base import BaseScheduler

from aggregate.buckets import distinct_contributors, pending_clip_count
from aggregate.release import (
    DEFAULT_BATCH,
    Checkpoint,
    ReleaseOutcome,
    no_checkpoint,
    ready_bucket_ids,
    release_ready_buckets,
    unfinished_bucket_ids,
)
from aggregate.residue import purge_residue
from aggregate.retention import (
    PurgeOutcome,
    advance_cycle,
    purge_expired_buckets,
    purge_keyless_buckets,
)
from aggregate.tables import PENDING_STATES, Bucket
from core.db import Database
from core.errors import ChorusError
from core.files import sweep_legacy_temporary_files
from core.keystore import KeyStore
from core.logs import configure_logging
from core.resources import Resources, process_resources
from core.scheduler import INTERVALS, PROCESS_EXECUTOR, interval_trigger
from core.storage import BlobStore
from policies.audit import current_cycle
from policies.policy import Policy
from policies.service import record_policy_load
from policies.tables import ReleaseCycle

JOB_ID = "chorus-release"
_logger = logging.getLogger("chorus.jobs")


def interval_seconds(name_or_seconds: str) -> float:
    """``hourly``/``daily``/``weekly`` or a number of seconds."""
    return float(INTERVALS.get(name_or_seconds) or float(name_or_seconds))


@dataclass(frozen=True)
class CycleReport:
    cycle: int
    advanced: bool
    released: list[ReleaseOutcome]
    purged: list[PurgeOutcome]


def run_release_cycle(
    *,
    database: Database,
    store: BlobStore,
    keys: KeyStore,
    policy: Policy,
    interval_s: float,
    now: dt.datetime | None = None,
    batch_size: int = DEFAULT_BATCH,
    checkpoint: Checkpoint = no_checkpoint,
) -> CycleReport:
    now = now or dt.datetime.now(dt.UTC)
    record_policy_load(database, policy)
    sweep_legacy_temporary_files()
    with database.session(write=True) as session:
        advanced = advance_cycle(session, interval_s=interval_s, now=now)
    # First: a bucket whose key was lost can be neither released nor opened by anyone.
    lost = purge_keyless_buckets(database, store, policy, keys=keys, batch_size=batch_size)
    release_failure: Exception | None = None
    try:
        released = release_ready_buckets(
            database,
            store,
            policy,
            keys=keys,
            today=now.date(),
            batch_size=batch_size,
            checkpoint=checkpoint,
        )
    except Exception as exc:
        # A bucket that failed to release (its store full or failing, anything) must not hold
        # back retention (P10) for everyone.
        released, release_failure = [], exc
    purged = lost + purge_expired_buckets(database, store, policy, keys=keys, batch_size=batch_size)
    if release_failure is not None:
        # Other buckets may have been released before the failure: their residue goes too.
        with contextlib.suppress(Exception):
            purge_residue(database, store)
        raise release_failure
    with database.session(write=True) as session:
        cycle = current_cycle(session)
    if released or purged or advanced is not None:
        _logger.info(
            "release cycle",
            extra={"cycle": cycle, "released": len(released), "purged": len(purged)},
        )
    if released or purged:
        # Last: the deleted pending rows and objects must not survive in files (P3, P4).
        purge_residue(database, store)
    return CycleReport(cycle=cycle, advanced=advanced is not None, released=released, purged=purged)


@dataclass(frozen=True)
class BucketPreview:
    bucket_id: str
    exercise_id: str
    state: str
    clip_count: int
    contributor_count: int


@dataclass(frozen=True)
class CyclePreview:
    cycle: int
    would_advance: bool
    to_release: list[BucketPreview] = field(default_factory=list)
    to_resume: list[BucketPreview] = field(default_factory=list)
    to_purge: list[BucketPreview] = field(default_factory=list)


def preview_release_cycle(
    *, database: Database, policy: Policy, interval_s: float, now: dt.datetime | None = None
) -> CyclePreview:
    """What ``run_release_cycle`` would do now, changing nothing (``chorus release --dry-run``)."""
    now = now or dt.datetime.now(dt.UTC)
    with database.session(write=True) as session:
        row = session.get(ReleaseCycle, 1)
        cycle = row.current if row is not None else 0
        last = row.advanced_at if row is not None else None
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=dt.UTC)
        would_advance = last is None or (now - last).total_seconds() >= interval_s * 0.9
        to_release = [_preview(session, b) for b in ready_bucket_ids(session, k=policy.k)]
        to_resume = [_preview(session, b) for b in unfinished_bucket_ids(session)]
        oldest_kept = cycle + (1 if would_advance else 0) - policy.retention_cycles
        expiring = [
            b
            for b in session.execute(
                sa.select(Bucket.id).where(
                    Bucket.state.in_(PENDING_STATES), Bucket.opened_cycle <= oldest_kept
                )
            ).scalars()
            if distinct_contributors(session, b) < policy.k
        ]
        to_purge = [_preview(session, b) for b in expiring]
    return CyclePreview(
        cycle=cycle,
        would_advance=would_advance,
        to_release=to_release,
        to_resume=to_resume,
        to_purge=to_purge,
    )


def _preview(session: sa.orm.Session, bucket_id: str) -> BucketPreview:
    bucket = session.get(Bucket, bucket_id)
    assert bucket is not None
    clips = pending_clip_count(session, bucket_id)
    return BucketPreview(
        bucket_id=bucket_id,
        exercise_id=bucket.exercise_id,
        state=bucket.state,
        clip_count=clips,
        contributor_count=distinct_contributors(session, bucket_id),
    )


def _release_job(
    database_url: str,
    storage_url: str,
    key_store_url: str,
    policy: Policy,
    interval_s: float,
    log_level: str,
) -> None:
    """One scheduled cycle, in the scheduler's job process (``core.scheduler``)."""
    resources = _job_resources(database_url, storage_url, key_store_url, log_level)
    try:
        run_release_cycle(
            database=resources.database,
            store=resources.store,
            keys=resources.keys,
            policy=policy,
            interval_s=interval_s,
        )
    except Exception as exc:
        # The next run finishes whatever this one left; nothing about clips is logged (the
        # message of a foreign error may name a key: only its type is).
        code = exc.code if isinstance(exc, ChorusError) else type(exc).__name__
        _logger.warning("release cycle failed", extra={"code": code})


def _job_resources(
    database_url: str, storage_url: str, key_store_url: str, log_level: str
) -> Resources:
    """The job process's logging (set up on its first job), database, store and key store."""
    if multiprocessing.parent_process() is not None:
        _configure_job_logging(log_level)
    return process_resources(database_url, storage_url, key_store_url)


@functools.cache
def _configure_job_logging(log_level: str) -> None:
    configure_logging(log_level)


def schedule_release_job(
    scheduler: BaseScheduler,
    *,
    database_url: str,
    storage_url: str,
    key_store_url: str,
    policy: Policy,
    interval: str,
    log_level: str = "INFO",
) -> None:
    """Add the release cycle to ``scheduler`` every ``interval`` (name or seconds).

    It runs on the scheduler's process executor: copying, manifests and deletions of a cycle
    take seconds of CPU, which on the API process's threads would stall its event loop.
    """
    scheduler.add_job(
        _release_job,
        trigger=interval_trigger(interval),
        args=(
            database_url,
            storage_url,
            key_store_url,
            policy,
            interval_seconds(interval),
            log_level,
        ),
        id=JOB_ID,
        name="release cycle",
        replace_existing=True,
        executor=PROCESS_EXECUTOR,
    )
