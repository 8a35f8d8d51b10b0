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
2. plan — pending rows are read in batches and their sealed facts opened with the bucket's
   key (P4: ``aggregate.pending``); a clip not yet planned gets a fresh random released id and
   sort position (from the CSPRNG), written to its ``released_clips`` row, and the pending row
   gets a keyed digest of that id (``plan_tag``), in one transaction, so a resumed run releases
   it under the same name and no one without the key can tell which released clip it was.
   Plans whose pending clip was withdrawn meanwhile are removed. A bucket whose recordings
   carry different bands gets one band for all (P4: no device trait).
3. shards — the planned clips are read in their random order, ``batch_size`` at a time, and
   each batch becomes one tar shard (``aggregate.dataset``): the pending bytes, opened with the
   bucket's key, are turned into the released bytes (``release_clip_bytes``: as they are, or
   under a policy with
   ``voice_anonymization`` the voice transformed with fresh random parameters, so a resumed run
   writes another anonymized version), written into an anonymous temporary file (nothing is
   left of it if the run is killed), and the shard is stored with one atomic write; its
   clips' SHA-256, shard and offset are then recorded.
   Every run writes every shard again from the plan (the same names, the same order), and
   removes shards a longer earlier plan left, so the shards hold each clip exactly once.
4. manifest — the dataset's tables, card and checksums, then the manifest, written last.
5. finalize — one transaction checks that every pending row is planned and that ≥ k distinct
   contributors remain, marks the bucket ``released`` and appends the ``release`` audit entry
   (P8); then the bucket key is deleted from the key store. A bucket that fell below k through
   withdrawals is not released: its release is undone and the bucket is sealed.
6. clean — pending objects are deleted (S3 DeleteObjects, 1,000 a request), then their rows,
   batch by batch; a re-run deletes what a killed one left.

A run releases up to ``BUCKET_WORKERS`` buckets at once (each bucket's steps wait mostly on
commits, fsyncs and store round trips, so several overlap), every one under its own claim and
through the same steps; its store reads are shared out among them.

On PostgreSQL a session advisory lock per bucket (``Database.try_lock``), held for the whole
release, keeps two runners off one bucket; a crashed runner's lock dies with its connection, so
the next run resumes. A runner that lost its lock while it lived is fenced off
(``aggregate.fencing``): each claim stores a fresh token on the bucket row, and every write of
the release checks it first.
"""

from __future__ import annotations

import calendar
import collections
import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Literal, TextIO, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aggregate.buckets import distinct_contributors, key_name, lock_bucket, pending_clip_count
from aggregate.dataset import (
    CARD,
    CHECKSUMMED_FILES,
    CHECKSUMS,
    DATASET_FILES,
    MANIFEST,
    SHARD_PREFIX,
    ClipRow,
    Describing,
    HashingWriter,
    StoredFile,
    TableWriters,
    TarWriter,
    clip_file_name,
    dataset_card,
    release_clip_bytes,
    release_cutoff_hz,
    shard_name,
)
from aggregate.fencing import ClaimLost, fenced, hold_claim, new_claim_token
from aggregate.pending import open_audio, open_facts, plan_tag
from aggregate.statistics import DURATION_EDGES, BatchStatistics, Histogram
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
from core.errors import BlobNotFound, ChorusError, DatabaseBusy
from core.files import anonymous_file, anonymous_text_file
from core.ids import new_id
from core.keystore import KeyStore
from core.sealing import Sealer
from core.storage import BlobStore
from exercises.tables import ExerciseUsage
from policies import flac as flac_format
from policies.audit import append as append_audit
from policies.policy import Policy
from policies.voice import MappedClip, VoiceAnonymizer

RELEASE_PREFIX = "releases/"
DEFAULT_BATCH = 1000
# The checkpoints a run passes: "copied" once a shard is stored.
STEPS = ("claimed", "planned", "copied", "manifest", "finalized", "cleaned")

STORE_WORKERS = 8
# Buckets one release run works on at once (``release_ready_buckets``).
BUCKET_WORKERS = 4
T = TypeVar("T")
R = TypeVar("R")

Checkpoint = Callable[[str], None]
_logger = logging.getLogger("chorus.release")


def no_checkpoint(_step: str) -> None:
    return None


def release_prefix(release_id: str) -> str:
    return f"{RELEASE_PREFIX}{release_id}/"


def manifest_key(release_id: str) -> str:
    return f"{release_prefix(release_id)}{MANIFEST}"


def clip_key(release_id: str, clip_id: str) -> str:
    """The clip's name: its path in the release's dataset folder (it is a shard member)."""
    return f"{release_prefix(release_id)}{clip_file_name(clip_id)}"


def shard_key(release_id: str, index: int) -> str:
    return f"{release_prefix(release_id)}{shard_name(index)}"


def dataset_file_key(release_id: str, name: str) -> str:
    return f"{release_prefix(release_id)}{name}"


@dataclass(frozen=True)
class ReleaseOutcome:
    bucket_id: str
    release_id: str
    exercise_id: str
    clip_count: int
    contributor_count: int


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


@contextlib.contextmanager
def bucket_claim(database: Database, bucket_id: str) -> Iterator[bool]:
    """Yields True while this runner alone works on the bucket.

    PostgreSQL: a session advisory lock per bucket, like ``FOR UPDATE SKIP LOCKED`` but held
    across the release's many short transactions. SQLite: one lock for all runners and
    buckets (the job processes of several ``chorus serve`` workers, a ``chorus release``), which
    ``release_ready_buckets`` holds for its whole run while its threads share out the buckets.
    Either is let go of when a killed runner's connection or process ends
    (``Database.try_lock``).
    """
    with database.try_lock(f"chorus-release:{bucket_id}", group="release") as acquired:
        yield acquired


# --- the steps ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    bucket_id: str
    release_id: str
    exercise_id: str
    language: str | None
    text: str | None
    course: str | None
    skill: str | None
    release_day: dt.date
    k_in_force: int
    policy_hash: str
    token: str
    license: str
    voice: VoiceAnonymizer
    # Opens the bucket's sealed clips, facts and plan (P4); made from its memory-only key.
    sealer: Sealer
    # The policy's release bandwidth, if it sets one: the release is never wider.
    policy_bandwidth_hz: float | None
    # Whether this claim created the release: then no earlier run stored any of its shards.
    new_release: bool


def _fence(database: Database, claim: _Claim) -> contextlib.AbstractContextManager[None]:
    """Store writes of ``claim``'s release, made only while its claim holds."""
    return fenced(database, bucket_id=claim.bucket_id, token=claim.token)


@dataclass(frozen=True)
class _Retire:
    """A ready bucket whose exercise is no longer common enough to release (P5)."""

    bucket_id: str
    exercise_id: str
    learners: int | None


def _claim(
    session: Session, bucket_id: str, *, policy: Policy, today: dt.date, keys: KeyStore
) -> _Claim | _Retire | None:
    bucket = lock_bucket(session, bucket_id)
    if bucket is None:
        return None
    bucket_key = keys.get(key_name(bucket_id))
    if bucket_key is None and bucket.state not in CLOSED_STATES:
        # Its sealed clips can be opened by no one: purge_keyless_buckets closes it (P4).
        return None
    if bucket.state in PENDING_STATES:
        if distinct_contributors(session, bucket_id) < policy.k:
            return None
        usage = session.execute(
            sa.select(
                ExerciseUsage.learners,
                ExerciseUsage.language,
                ExerciseUsage.text,
                ExerciseUsage.course,
                ExerciseUsage.skill,
            ).where(ExerciseUsage.exercise_id == bucket.exercise_id)
        ).first()
        if usage is None or usage.learners < policy.min_exercise_learners:
            return _retire(session, bucket, policy=policy, usage=usage)
        release = Release(
            id=new_id(),
            bucket_id=bucket.id,
            exercise_id=bucket.exercise_id,
            language=usage.language,
            text=usage.text,
            course=usage.course,
            skill=usage.skill,
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
        created = True
    elif bucket.state == BucketState.RELEASING and bucket.release_id is not None:
        found = session.get(Release, bucket.release_id)
        if found is None:
            raise ChorusError(f"bucket {bucket.id} is releasing without its release row")
        release = found
        created = False
    else:
        return None
    # A new token fences off whichever runner claimed the bucket before (aggregate.fencing).
    bucket.claim_token = new_claim_token()
    return _Claim(
        bucket_id=bucket.id,
        release_id=release.id,
        exercise_id=release.exercise_id,
        language=release.language,
        text=release.text,
        course=release.course,
        skill=release.skill,
        release_day=release.release_day,
        k_in_force=release.k_in_force,
        policy_hash=release.policy_hash,
        token=bucket.claim_token,
        license=policy.release_license,
        voice=VoiceAnonymizer.from_policy(policy),
        sealer=Sealer(cast(bytes, bucket_key), bucket_id=bucket.id),
        policy_bandwidth_hz=policy.release_bandwidth_hz,
        new_release=created,
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


def _in_parallel(action: Callable[[T], object], items: list[T]) -> None:
    """Run store calls of one batch concurrently: they wait on I/O (fsync, HTTP), not the CPU.
    The first failure is raised after the batch's other calls have finished."""
    with ThreadPoolExecutor(max_workers=STORE_WORKERS) as pool:
        for _ in pool.map(action, items):
            pass


def _in_order(
    pool: ThreadPoolExecutor, action: Callable[[T], R], items: Iterable[T], *, ahead: int
) -> Iterator[tuple[T, R]]:
    """``(item, action(item))`` in the items' order, with at most ``ahead`` calls under way:
    reads overlap, and memory holds a bounded window of results whatever the batch size."""
    window: collections.deque[tuple[T, Future[R]]] = collections.deque()
    for item in items:
        window.append((item, pool.submit(action, item)))
        if len(window) >= ahead:
            first, future = window.popleft()
            yield first, future.result()
    while window:
        first, future = window.popleft()
        yield first, future.result()


def _plan_batch(
    session: Session, claim: _Claim, rows: list[Any], *, durations: Histogram
) -> set[float]:
    """Give every unplanned row a fresh random released id and position (P4): nothing about
    the released clip is derived from the pending row, its id, its tag or any key. The plan
    is sealed on the pending row, so no copy of it links a pending row to a released clip once
    the key is gone. Returns the bands the rows' clips carry; adds their upload durations to
    ``durations``."""
    facts = {row.id: open_facts(claim.sealer, row.id, row.sealed_facts) for row in rows}
    bands = {fact.band_hz for fact in facts.values()}
    for fact in facts.values():
        durations.add(fact.duration_s)
    fresh = [row for row in rows if row.plan_tag is None]
    if not fresh:
        return bands
    names = {row.id: new_id() for row in fresh}
    session.execute(
        sa.insert(ReleasedClip),
        [
            {
                "id": names[row.id],
                "release_id": claim.release_id,
                "position": secrets.randbits(31),
                "object_key": clip_key(claim.release_id, names[row.id]),
                "duration_s": facts[row.id].duration_s,
                "sample_rate": facts[row.id].sample_rate,
                "loudness_dbfs": facts[row.id].loudness_dbfs,
            }
            for row in fresh
        ],
    )
    pending = cast(sa.Table, PendingClip.__table__)
    session.execute(
        sa.update(pending)
        .where(pending.c.id == sa.bindparam("pending_id"))
        .values(plan_tag=sa.bindparam("plan")),
        [{"pending_id": row.id, "plan": plan_tag(claim.sealer, names[row.id])} for row in fresh],
    )
    return bands


_PLAN_COLUMNS = (PendingClip.id, PendingClip.sealed_facts, PendingClip.plan_tag)


@dataclass(frozen=True)
class _Plan:
    """What the plan pass learned: the bucket's distinct contributors as its last batch saw
    them, and the one band every released clip is limited to (P4: the rate a device recorded
    at must not be readable off a clip's spectrum). None when every recording of the bucket
    carries the same band and the policy sets none: the canonical resampling already gave
    them all the same cutoff, so the clips are released as they were sanitized. The median
    upload duration is the one a retiming voice transform releases every clip at."""

    contributors: int
    bandwidth_hz: float | None
    median_duration_s: float | None


def _plan_all(
    database: Database, claim: _Claim, *, batch_size: int, checkpoint: Checkpoint
) -> _Plan:
    """Plan every pending clip of the bucket, a batch of rows per transaction.

    The first transaction also removes stale plans, and a batch shorter than ``batch_size``
    is the last: a pending row added or withdrawn after its batch makes ``_finalize`` find the
    plan incomplete, and the plan pass runs again.
    """
    after = ""
    first = True
    bands: set[float] = set()
    durations = Histogram(DURATION_EDGES)
    while True:
        with database.session(write=True) as session:
            hold_claim(session, bucket_id=claim.bucket_id, token=claim.token)
            if first:
                _prune_withdrawn(session, claim)
            rows = session.execute(
                sa.select(*_PLAN_COLUMNS)
                .where(PendingClip.bucket_id == claim.bucket_id, PendingClip.id > after)
                .order_by(PendingClip.id)
                .limit(batch_size)
            ).all()
            bands |= _plan_batch(session, claim, list(rows), durations=durations)
            last = len(rows) < batch_size
            contributors = distinct_contributors(session, claim.bucket_id) if last else 0
        if rows:
            checkpoint("planned")
        if last:
            return _Plan(
                contributors,
                _release_band(bands, claim.policy_bandwidth_hz),
                durations.quantile(0.5),
            )
        after = rows[-1].id
        first = False


def _release_band(bands: set[float], policy_bandwidth_hz: float | None) -> float | None:
    if policy_bandwidth_hz is not None:
        return min([policy_bandwidth_hz, *bands])
    if len(bands) > 1:
        return min(bands)
    return None


def _prune_withdrawn(session: Session, claim: _Claim) -> None:
    """Remove plans that no pending clip stands behind any more (withdrawn while the release
    ran, or planned by an older run): the shards written next leave them out. The planned
    clips are walked a batch at a time, so memory stays flat in the bucket's size."""
    after = ""
    while True:
        planned = (
            session.execute(
                sa.select(ReleasedClip.id)
                .where(ReleasedClip.release_id == claim.release_id, ReleasedClip.id > after)
                .order_by(ReleasedClip.id)
                .limit(DEFAULT_BATCH)
            )
            .scalars()
            .all()
        )
        if not planned:
            return
        sources = _plan_sources(session, claim, planned)
        stale = [clip_id for clip_id in planned if clip_id not in sources]
        if stale:
            session.execute(sa.delete(ReleasedClip).where(ReleasedClip.id.in_(stale)))
        after = planned[-1]


def _plan_sources(session: Session, claim: _Claim, clip_ids: Iterable[str]) -> dict[str, str]:
    """Released clip id -> the pending object it is made from, for ``clip_ids`` whose pending
    clip is still there: found by the keyed digest of each id (``plan_tag``)."""
    by_tag = {plan_tag(claim.sealer, clip_id): clip_id for clip_id in clip_ids}
    rows = session.execute(
        sa.select(PendingClip.plan_tag, PendingClip.object_key).where(
            PendingClip.bucket_id == claim.bucket_id, PendingClip.plan_tag.in_(list(by_tag))
        )
    ).all()
    return {by_tag[row.plan_tag]: row.object_key for row in rows}


@dataclass(frozen=True)
class _ShardClip:
    """A planned clip as a shard needs it: its released name and its pending original."""

    clip_id: str
    position: int
    source_key: str
    duration_s: float
    sample_rate: int
    loudness_dbfs: float


def _planned_batches(
    database: Database, claim: _Claim, *, batch_size: int
) -> Iterator[list[_ShardClip]]:
    """The planned clips in their random release order (keyset on position, id), a shard's
    worth at a time. A planned clip whose pending original is gone (withdrawn) is left out;
    ``_finalize`` then finds the plan changed and the release plans again."""
    query = sa.select(
        ReleasedClip.id,
        ReleasedClip.position,
        ReleasedClip.duration_s,
        ReleasedClip.sample_rate,
        ReleasedClip.loudness_dbfs,
    ).where(ReleasedClip.release_id == claim.release_id)
    for rows in _in_release_order(database, query, batch_size=batch_size):
        with database.session() as session:
            sources = _plan_sources(session, claim, [row.id for row in rows])
        clips = [
            _ShardClip(
                clip_id=row.id,
                position=row.position,
                source_key=sources[row.id],
                duration_s=row.duration_s,
                sample_rate=row.sample_rate,
                loudness_dbfs=row.loudness_dbfs,
            )
            for row in rows
            if row.id in sources
        ]
        if clips:
            yield clips


def _in_release_order(
    database: Database, query: sa.Select[*tuple[Any, ...]], *, batch_size: int
) -> Iterator[list[Any]]:
    """``query``'s rows (which select ``ReleasedClip.id`` and ``.position``) in the release's
    random order, a batch per transaction (keyset on position, id)."""
    last: tuple[int, str] | None = None
    while True:
        page = query
        if last is not None:
            page = page.where(sa.tuple_(ReleasedClip.position, ReleasedClip.id) > sa.tuple_(*last))
        with database.session(write=True) as session:
            rows = list(
                session.execute(
                    page.order_by(ReleasedClip.position, ReleasedClip.id).limit(batch_size)
                ).all()
            )
        if rows:
            yield rows
        if len(rows) < batch_size:
            return  # a short page is the last one
        last = (rows[-1].position, rows[-1].id)


def _release_voice(
    database: Database,
    store: BlobStore,
    claim: _Claim,
    plan: _Plan,
    *,
    batch_size: int,
    read_workers: int,
) -> VoiceAnonymizer:
    """The voice transform the shards are written with: a retiming pseudo-voice releases every
    clip at the release's median upload duration, and one that averages first reads every
    pending clip once to take the mean of their mapped envelopes (in the read workers; the
    mean, like the target, lives only in memory)."""
    voice = claim.voice.retimed_to(plan.median_duration_s)
    if not voice.averages:
        return voice

    def mapped(clip: _ShardClip) -> MappedClip | None:
        try:
            sealed = store.get(clip.source_key)
        except BlobNotFound:
            return None  # withdrawn meanwhile: the shards leave it out too
        return voice.mapped_clip(open_audio(claim.sealer, clip.source_key, sealed))

    def every_clip() -> Iterator[MappedClip | None]:
        with ThreadPoolExecutor(max_workers=read_workers) as pool:
            for clips in _planned_batches(database, claim, batch_size=batch_size):
                for _clip, result in _in_order(pool, mapped, clips, ahead=2 * read_workers):
                    yield result

    return voice.with_release_mean(every_clip())


@dataclass(frozen=True)
class _ReleasedBytes:
    data: bytes
    sha256: str
    duration_s: float  # of the released audio: a retiming voice transform changes it


def _read_released(
    store: BlobStore, claim: _Claim, bandwidth_hz: float | None, clip: _ShardClip
) -> _ReleasedBytes | None:
    """The clip's released bytes and their SHA-256, made in a read worker (opening, hashing
    and any voice transform release the GIL, so they overlap the shard's writing); None when
    the pending original is gone (withdrawn, checked afterwards)."""
    try:
        sealed = store.get(clip.source_key)
    except BlobNotFound:
        return None
    pending = open_audio(claim.sealer, clip.source_key, sealed)
    released = release_clip_bytes(pending, claim.voice, bandwidth_hz=bandwidth_hz)
    # Only a retiming voice transform changes a clip's duration; otherwise the upload's holds.
    duration_s = flac_format.duration_s(released) if claim.voice.retimes else clip.duration_s
    return _ReleasedBytes(released, hashlib.sha256(released).hexdigest(), duration_s)


def _require_withdrawn(database: Database, missing: list[_ShardClip]) -> None:
    """A pending original may be missing only if its clip was withdrawn while we read."""
    if not missing:
        return
    with database.session(write=True) as session:
        still_pending = session.execute(
            sa.select(sa.func.count())
            .select_from(PendingClip)
            .where(PendingClip.object_key.in_([clip.source_key for clip in missing]))
        ).scalar_one()
    if still_pending:
        raise BlobNotFound(f"{still_pending} pending original(s) of this release are missing")


def _release_day_mtime(claim: _Claim) -> int:
    """Every released file is dated the release day (P4)."""
    return calendar.timegm(claim.release_day.timetuple())


def _write_shard(
    database: Database,
    store: BlobStore,
    claim: _Claim,
    index: int,
    clips: list[_ShardClip],
    *,
    pool: ThreadPoolExecutor,
    stats: BatchStatistics,
    bandwidth_hz: float | None,
    ahead: int = 2 * STORE_WORKERS,
) -> StoredFile | None:
    """One shard: the clips' released bytes into an anonymous temporary tar file (a killed
    run leaves nothing of a bucket not yet released), stored with one atomic write, then their
    checksums and offsets recorded. None if every clip was withdrawn meanwhile."""
    recorded: list[dict[str, Any]] = []
    missing: list[_ShardClip] = []
    with anonymous_file() as handle:
        out = HashingWriter(handle)
        tar = TarWriter(out, mtime=_release_day_mtime(claim))
        read = functools.partial(_read_released, store, claim, bandwidth_hz)
        for clip, released in _in_order(pool, read, clips, ahead=ahead):
            if released is None:
                missing.append(clip)
                continue
            offset = tar.add(clip_file_name(clip.clip_id), released.data)
            recorded.append(
                {
                    "clip_id": clip.clip_id,
                    "sha256": released.sha256,
                    "shard": index,
                    "member_offset": offset,
                    "member_size": len(released.data),
                    "duration_s": released.duration_s,
                }
            )
            stats.add(
                duration_s=released.duration_s,
                sample_rate=clip.sample_rate,
                loudness_dbfs=clip.loudness_dbfs,
            )
        tar.close()
        _require_withdrawn(database, missing)
        if not recorded:
            return None
        handle.seek(0)
        with _fence(database, claim):
            store.put_file(shard_key(claim.release_id, index), handle)
    released_clips = cast(sa.Table, ReleasedClip.__table__)
    with database.session(write=True) as session:
        hold_claim(session, bucket_id=claim.bucket_id, token=claim.token)
        session.execute(
            sa.update(released_clips)
            .where(released_clips.c.id == sa.bindparam("clip_id"))
            .values(
                sha256=sa.bindparam("sha256"),
                shard=sa.bindparam("shard"),
                member_offset=sa.bindparam("member_offset"),
                member_size=sa.bindparam("member_size"),
                duration_s=sa.bindparam("duration_s"),
            ),
            recorded,
        )
    return StoredFile(shard_name(index), out.size, out.digest.hexdigest(), clips=len(recorded))


def _write_shards(
    database: Database,
    store: BlobStore,
    claim: _Claim,
    *,
    batch_size: int,
    checkpoint: Checkpoint,
    first_plan: bool,
    bandwidth_hz: float | None,
    read_workers: int = STORE_WORKERS,
) -> tuple[BatchStatistics, list[StoredFile]]:
    """Every shard of the release from its plan, then shards an earlier, longer plan left
    (none when ``first_plan``: the release's first plan, made under the claim that created
    it, so no listing is needed)."""
    stats = BatchStatistics()
    shards: list[StoredFile] = []
    with ThreadPoolExecutor(max_workers=read_workers) as pool:
        for clips in _planned_batches(database, claim, batch_size=batch_size):
            shard = _write_shard(
                database,
                store,
                claim,
                len(shards),
                clips,
                pool=pool,
                stats=stats,
                bandwidth_hz=bandwidth_hz,
                ahead=2 * read_workers,
            )
            if shard is not None:
                shards.append(shard)
            checkpoint("copied")
    if first_plan:
        return stats, shards
    written = {shard_key(claim.release_id, index) for index in range(len(shards))}
    stale = [
        key
        for key in store.list(f"{release_prefix(claim.release_id)}{SHARD_PREFIX}")
        if key not in written
    ]
    if stale:
        with _fence(database, claim):
            store.delete_many(stale)
    return stats, shards


def manifest_header(
    claim: _Claim, stats: BatchStatistics, *, bandwidth_hz: float | None = None
) -> dict[str, Any]:
    band = None
    if bandwidth_hz is not None and math.isfinite(bandwidth_hz):
        band = round(release_cutoff_hz(bandwidth_hz))
    return {
        "release_id": claim.release_id,
        "exercise_id": claim.exercise_id,
        "language": claim.language,
        "text": claim.text,
        "course": claim.course,
        "skill": claim.skill,
        "release_day": claim.release_day.isoformat(),
        "clip_count": stats.clip_count,
        "contributor_count": stats.contributor_count,
        "k": claim.k_in_force,
        "policy_hash": claim.policy_hash,
        "license": claim.license,
        "voice_anonymization": claim.voice.manifest_entry(),
        "bandwidth_hz": band,
        "statistics": stats.to_json(),
    }


@contextlib.contextmanager
def _temporary_files(names: Iterable[str]) -> Iterator[dict[str, TextIO]]:
    """An anonymous text file per name (``core.files.anonymous_text_file``): the tables hold
    the clip ids and checksums of a release not yet finished, and a kill leaves none."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(anonymous_text_file()) for name in names}


def _rewound(handle: TextIO) -> BinaryIO:
    """The bytes written through ``handle`` so far, to be read from the start."""
    handle.flush()
    handle.buffer.seek(0)
    return handle.buffer


def _stored_file(name: str, handle: TextIO) -> StoredFile:
    digest = _sha256_of(handle)  # flushes: the size is then the whole file's
    return StoredFile(name, os.fstat(handle.fileno()).st_size, digest)


def _sha256_of(handle: TextIO) -> str:
    digest = hashlib.sha256()
    source = _rewound(handle)
    while chunk := source.read(1 << 16):
        digest.update(chunk)
    return digest.hexdigest()


_CLIP_COLUMNS = (
    ReleasedClip.id,
    ReleasedClip.position,
    ReleasedClip.duration_s,
    ReleasedClip.sample_rate,
    ReleasedClip.loudness_dbfs,
    ReleasedClip.sha256,
    ReleasedClip.shard,
    ReleasedClip.member_offset,
    ReleasedClip.member_size,
)


def _released_rows(database: Database, release_id: str, *, batch_size: int) -> Iterator[Any]:
    """A release's clips as plain rows in their shuffled order (keyset on position, id)."""
    query = sa.select(*_CLIP_COLUMNS).where(ReleasedClip.release_id == release_id)
    for rows in _in_release_order(database, query, batch_size=batch_size):
        yield from rows


def _write_dataset_files(
    database: Database,
    store: BlobStore,
    claim: _Claim,
    stats: BatchStatistics,
    shards: list[StoredFile],
    *,
    batch_size: int,
    bandwidth_hz: float | None,
) -> None:
    """The dataset's tables, card and checksums, then the manifest: one pass over the clips
    writes every table and the manifest's clip list into temporary files, so memory stays
    flat in the release's size; the small files are stored together, the manifest last."""
    header = manifest_header(claim, stats, bandwidth_hz=bandwidth_hz)
    describing = Describing(
        exercise_id=claim.exercise_id,
        text=claim.text,
        language=claim.language,
        course=claim.course,
        skill=claim.skill,
    )
    with _temporary_files((*DATASET_FILES, MANIFEST, _CLIP_ENTRIES)) as handles:
        writers = TableWriters(handles, describing)
        rows = _released_rows(database, claim.release_id, batch_size=batch_size)
        for index, clip in enumerate(rows):
            if clip.sha256 is None:
                raise _UnplannedClips("a planned clip is in no shard")
            writers.add(ClipRow(clip.id, clip.duration_s, clip.sample_rate, clip.sha256))
            handles[_CLIP_ENTRIES].write(("," if index else "") + _clip_entry(index, clip))
        handles[CARD].write(dataset_card(header, license_id=claim.license))
        for name in CHECKSUMMED_FILES:
            handles[CHECKSUMS].write(f"{_sha256_of(handles[name])}  {name}\n")
        files = [_stored_file(name, handles[name]) for name in DATASET_FILES]
        out = handles[MANIFEST]
        text = json.dumps(
            {
                **header,
                "layout": "audiofolder in tar shards",
                "shards": [shard.to_json() for shard in shards],
                "files": [file.to_json() for file in files],
            },
            separators=(",", ":"),
        )
        out.write(text[:-1] + ',"clips":[')
        entries = handles[_CLIP_ENTRIES]
        entries.seek(0)
        shutil.copyfileobj(entries, out, 1 << 16)
        out.write("]}")
        # After the ownership check, and under it: never over a finished release's files.
        with _fence(database, claim):
            _in_parallel(
                lambda name: store.put_file(
                    dataset_file_key(claim.release_id, name), _rewound(handles[name])
                ),
                list(DATASET_FILES),
            )
            store.put_file(manifest_key(claim.release_id), _rewound(out))  # the last one


_CLIP_ENTRIES = "clips.part"


def _clip_entry(index: int, clip: Any) -> str:
    return json.dumps(
        {
            "clip_id": clip.id,
            "file_name": clip_file_name(clip.id),
            "position": index,
            "duration_s": clip.duration_s,
            "sample_rate": clip.sample_rate,
            "loudness_dbfs": clip.loudness_dbfs,
            "sha256": clip.sha256,
            "shard": None if clip.shard is None else shard_name(clip.shard),
            "offset": clip.member_offset,
            "size": clip.member_size,
        },
        separators=(",", ":"),
    )


Finalized = Literal["released", "not_ours", "below_k"]


def _finalize(
    session: Session, claim: _Claim, stats: BatchStatistics
) -> tuple[Finalized, list[str]]:
    """Mark released and audit; or, when withdrawals left fewer than k contributors, undo the
    release and seal the bucket (returning the released copies to delete)."""
    bucket = lock_bucket(session, claim.bucket_id)
    if (
        bucket is None
        or bucket.state != BucketState.RELEASING
        or bucket.release_id != claim.release_id
        or bucket.claim_token != claim.token
    ):
        return "not_ours", []
    contributors = distinct_contributors(session, claim.bucket_id)
    if contributors < claim.k_in_force:
        return "below_k", _undo_claim(session, bucket, claim)
    pending = pending_clip_count(session, claim.bucket_id)
    planned = session.execute(
        sa.select(sa.func.count())
        .select_from(ReleasedClip)
        .where(ReleasedClip.release_id == claim.release_id)
    ).scalar_one()
    # The manifest already says how many clips and contributors: the audit must say the same.
    if pending != planned or pending != stats.clip_count or contributors != stats.contributor_count:
        raise _UnplannedClips("pending clips changed while the release was planned")
    release = session.get(Release, claim.release_id)
    assert release is not None
    release.clip_count = stats.clip_count
    release.contributor_count = stats.contributor_count
    release.statistics = json.dumps(stats.to_json(), separators=(",", ":"))
    bucket.state = BucketState.RELEASED
    # What P5 rested on, for the auditor: the exercise's learner count as the release ends.
    exercise_learners = session.execute(
        sa.select(ExerciseUsage.learners).where(ExerciseUsage.exercise_id == claim.exercise_id)
    ).scalar_one_or_none()
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
            "exercise_learners": exercise_learners,
        },
    )
    return "released", []


def _undo_claim(session: Session, bucket: Bucket, claim: _Claim) -> list[str]:
    """Put a claimed bucket that fell below k back among the pending ones, sealed: a fresh
    bucket may have opened for its exercise meanwhile. Returns the prefix whose objects (its
    shards and files) are to be deleted."""
    session.execute(sa.delete(ReleasedClip).where(ReleasedClip.release_id == claim.release_id))
    session.execute(
        sa.update(PendingClip).where(PendingClip.bucket_id == claim.bucket_id).values(plan_tag=None)
    )
    session.execute(sa.delete(Release).where(Release.id == claim.release_id))
    bucket.state = BucketState.SEALED
    bucket.release_id = None
    return [release_prefix(claim.release_id)]


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
        store.delete_many([row.object_key for row in rows])
        checkpoint("cleaned")
        with database.session(write=True) as session:
            session.execute(
                sa.delete(PendingClip).where(PendingClip.id.in_([row.id for row in rows]))
            )
        deleted += len(rows)
        if len(rows) < batch_size:
            return deleted  # a closed bucket gains no pending rows: a short batch is the last


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
    with bucket_claim(database, bucket_id) as acquired:
        if not acquired:
            return None
        return _release_held_bucket(
            database,
            store,
            policy,
            bucket_id,
            keys=keys,
            today=today,
            batch_size=batch_size,
            checkpoint=checkpoint,
            read_workers=STORE_WORKERS,
        )


def _release_held_bucket(
    database: Database,
    store: BlobStore,
    policy: Policy,
    bucket_id: str,
    *,
    keys: KeyStore,
    today: dt.date | None,
    batch_size: int,
    checkpoint: Checkpoint,
    read_workers: int,
) -> ReleaseOutcome | None:
    """``release_bucket``'s work, by a caller that holds the bucket's claim lock."""
    today = today or dt.datetime.now(dt.UTC).date()
    try:
        with database.session(write=True) as session:
            claim = _claim(session, bucket_id, policy=policy, today=today, keys=keys)
    except DatabaseBusy:
        return None  # uploads kept the row busy; the next run tries again
    outcome: ReleaseOutcome | None = None
    if isinstance(claim, _Claim):
        checkpoint("claimed")
        try:
            outcome = _release_claimed(
                database,
                store,
                claim,
                batch_size=batch_size,
                checkpoint=checkpoint,
                read_workers=read_workers,
            )
        except ClaimLost:
            # Taken over after this runner's lock was lost: the new owner finishes it.
            _logger.warning("release claim taken over")
            return None
    if outcome is not None or _is_closed(database, bucket_id):
        keys.delete(key_name(bucket_id))
        drain_pending(database, store, bucket_id, batch_size=batch_size, checkpoint=checkpoint)
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
    read_workers: int = STORE_WORKERS,
) -> ReleaseOutcome | None:
    for attempt in range(3):
        plan = _plan_all(database, claim, batch_size=batch_size, checkpoint=checkpoint)
        voice = _release_voice(
            database, store, claim, plan, batch_size=batch_size, read_workers=read_workers
        )
        stats, shards = _write_shards(
            database,
            store,
            replace(claim, voice=voice),
            batch_size=batch_size,
            checkpoint=checkpoint,
            first_plan=claim.new_release and attempt == 0,
            bandwidth_hz=plan.bandwidth_hz,
            read_workers=read_workers,
        )
        stats.contributor_count = plan.contributors
        try:
            _write_dataset_files(
                database,
                store,
                claim,
                stats,
                shards,
                batch_size=batch_size,
                bandwidth_hz=plan.bandwidth_hz,
            )
            checkpoint("manifest")
            with database.session(write=True) as session:
                finished, undone = _finalize(session, claim, stats)
        except _UnplannedClips:
            continue
        for prefix in undone:
            store.delete_many(list(store.list(prefix)))
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
    bucket_workers: int = BUCKET_WORKERS,
) -> list[ReleaseOutcome]:
    """Finish what killed runs left, then release every bucket that reached k.

    Up to ``bucket_workers`` buckets are released at once: a bucket's release waits mostly on
    commits, fsyncs and store round trips rather than the CPU, so several overlap. Each bucket
    is still released under its own claim (PostgreSQL: its advisory lock); on SQLite, whose
    release lock is one for all runners, the run takes it once and shares its buckets out among
    its threads. Outcomes are returned in the candidates' order.
    """
    with database.session(write=True) as session:
        candidates = unfinished_bucket_ids(session) + ready_bucket_ids(session, k=policy.k)
    bucket_ids = list(dict.fromkeys(candidates))
    workers = max(1, min(bucket_workers, len(bucket_ids)))
    failures: list[Exception] = []

    def attempt(release: Callable[[str], ReleaseOutcome | None], bucket_id: str) -> Any:
        try:
            return release(bucket_id)
        except Exception as exc:
            # One bucket's trouble (a full or failing store, a lost database connection, a
            # bug) must not hold back the others; it stays 'releasing' and the next run
            # resumes it. The first failure is raised once all were tried.
            code = exc.code if isinstance(exc, ChorusError) else type(exc).__name__
            _logger.warning("bucket release failed", extra={"code": code})
            failures.append(exc)
            return None

    # The buckets under way share the store's reads (and its connections) between them.
    read_workers = max(2, STORE_WORKERS // workers)

    def release_held(bucket_id: str) -> ReleaseOutcome | None:
        return _release_held_bucket(
            database,
            store,
            policy,
            bucket_id,
            keys=keys,
            today=today,
            batch_size=batch_size,
            checkpoint=checkpoint,
            read_workers=read_workers,
        )

    def release_locked(bucket_id: str) -> ReleaseOutcome | None:
        with bucket_claim(database, bucket_id) as acquired:
            return release_held(bucket_id) if acquired else None

    results: list[ReleaseOutcome | None]
    if workers == 1:
        results = [attempt(release_locked, bucket_id) for bucket_id in bucket_ids]
    elif database.locks_each_name:
        results = _released_concurrently(
            functools.partial(attempt, release_locked), bucket_ids, workers=workers
        )
    else:
        # One release lock for every runner and bucket (SQLite: ``bucket_claim``), held for
        # this run; its threads work on distinct buckets.
        with bucket_claim(database, bucket_ids[0]) as acquired:
            if not acquired:
                return []
            results = _released_concurrently(
                functools.partial(attempt, release_held), bucket_ids, workers=workers
            )
    outcomes = [outcome for outcome in results if outcome is not None]
    if outcomes:
        _logger.info(
            "released buckets",
            extra={"buckets": len(outcomes), "clips": sum(o.clip_count for o in outcomes)},
        )
    if failures:
        raise failures[0]
    return outcomes


def _released_concurrently(
    release: Callable[[str], ReleaseOutcome | None], bucket_ids: list[str], *, workers: int
) -> list[ReleaseOutcome | None]:
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="release") as pool:
        return list(pool.map(release, bucket_ids))
