"""Upload and withdrawal logic (no HTTP): the sanitize and store steps of the pipeline.

``sanitize_and_store`` is what an upload worker process runs (``ingest.decoder``): decoding,
re-encoding, the object write and the row's transaction all happen there, so the API process's
event loop only parses requests and checks tokens, and no thread of it competes for the
interpreter with the store step.

Upholds P3 (the learner id goes only into ``put_pending_clip``, which keeps a keyed tag), P4
(the clip and its facts sealed under the bucket's memory-only key, a random object key, no time
anywhere, no per-clip log line), P6 (``ContributionLimit`` from the unique slot constraint,
``DuplicateRecording`` for a recording already in the bucket) and P9 (withdrawal removes every
pending clip of the learner). An object whose row is refused is deleted at once; one whose row
write ended with the database unreachable (the commit may have landed) or that survives a crash
between the two steps is removed by the orphan sweeper (``ingest.jobs``) if no row refers to it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aggregate.buckets import (
    PENDING_PREFIX,
    find_stored_request,
    prepare_upload_statements,
    withdraw_learner,
)
from aggregate.pending import (
    PendingFacts,
    SanitizedAudio,
    prepare_pending_statements,
    put_pending_clip,
)
from aggregate.residue import purge_residue
from core.db import Database
from core.errors import ChorusError, ConsentWithdrawn, ExerciseNotEligible
from core.keystore import KeyStore
from core.resources import process_resources
from core.storage import BlobStore
from exercises.catalog import require_eligible
from ingest.audio import AudioLimits, SanitizedClip, sanitize_audio
from ingest.consent import Consent
from ingest.recordings import is_duplicate_print
from ingest.tables import WithdrawnToken, expiry_day
from policies.audit import append as append_audit
from policies.policy import Policy


def audio_limits(policy: Policy) -> AudioLimits:
    return AudioLimits(
        min_duration_s=policy.min_duration_s,
        max_duration_s=policy.max_duration_s,
        min_sample_rate=policy.min_sample_rate,
        max_sample_rate=policy.max_sample_rate,
        output_sample_rate=policy.output_sample_rate,
        min_speech_s=policy.min_speech_s,
    )


def check_exercise(database: Database, *, policy: Policy, exercise_id: str) -> None:
    with database.session() as session:
        require_eligible(
            session, exercise_id=exercise_id, min_learners=policy.min_exercise_learners
        )


def store_clip(
    *,
    database: Database,
    store: BlobStore,
    policy: Policy,
    consent: Consent,
    exercise_id: str,
    clip: SanitizedClip,
    keys: KeyStore,
    verify_exercise: bool = False,
    request_id: bytes | None = None,
) -> bool:
    """Seal the clip under its bucket's key and store it, then its pending row
    (``aggregate.pending``); the object is undone if the row is refused.

    ``verify_exercise`` re-reads the exercise's eligibility in the row's own transaction.
    With ``request_id`` (an Idempotency-Key upload) a request the bucket already holds is not
    stored again: False is returned.
    """

    def checks(connection: sa.Connection) -> None:
        if verify_exercise:
            require_eligible(
                connection, exercise_id=exercise_id, min_learners=policy.min_exercise_learners
            )
        # Read after the bucket row is locked: a withdrawal that committed meanwhile is seen.
        if _is_withdrawn(connection, consent):
            raise ConsentWithdrawn("the learner withdrew this consent; nothing was stored")

    stored = put_pending_clip(
        database,
        store,
        keys=keys,
        exercise_id=exercise_id,
        learner_id=consent.learner_id,
        clip=SanitizedAudio(
            flac=clip.flac,
            facts=PendingFacts(
                duration_s=clip.duration_s,
                sample_rate=clip.sample_rate,
                loudness_dbfs=clip.loudness_dbfs,
                source_sample_rate=clip.source_sample_rate,
                fingerprint=clip.fingerprint,
            ),
            samples_digest=clip.samples_digest,
        ),
        max_clips_per_contributor=policy.max_clips_per_contributor,
        in_transaction=checks,
        is_duplicate=is_duplicate_print,
        request_id=request_id,
    )
    return stored is not None


def is_stored(database: Database, *, keys: KeyStore, exercise_id: str, request_id: bytes) -> bool:
    """Whether this Idempotency-Key request is on a pending row (its bucket not yet released)."""
    with database.connection() as connection:
        return find_stored_request(
            connection, exercise_id=exercise_id, request_id=request_id, keys=keys
        )


SanitizeTask = Callable[[bytes, AudioLimits], SanitizedClip]


@dataclass(frozen=True)
class UploadJob:
    """An upload that passed the API process's checks (steps 1–4), for a worker to finish.

    The learner id travels in ``consent`` to the worker's memory and goes no further than the
    keyed tag (P3).
    """

    audio: bytes
    exercise_id: str
    consent: Consent
    policy: Policy
    database_url: str
    storage_url: str
    key_store_url: str
    decode_timeout_s: float
    # ``IdempotentUpload.request_id`` when the upload came with an Idempotency-Key.
    request_id: bytes | None = None


def sanitize_and_store(job: UploadJob, sanitize: SanitizeTask = sanitize_audio) -> None:
    """Steps 5–7 in an upload worker process: sanitize, then object and row (``store_clip``).

    A decode that overruns ``decode_timeout_s`` ends the worker process itself (the default
    action of SIGALRM), since native decoder code cannot be interrupted; the pool then answers
    503 and replaces the worker. The store step is not under that alarm.
    """
    _arm_decode_alarm(job.decode_timeout_s)
    try:
        clip = sanitize(job.audio, audio_limits(job.policy))
    finally:
        _arm_decode_alarm(0.0)
    resources = process_resources(job.database_url, job.storage_url, job.key_store_url)
    store_clip(
        database=resources.database,
        store=resources.store,
        keys=resources.keys,
        policy=job.policy,
        consent=job.consent,
        exercise_id=job.exercise_id,
        clip=clip,
        verify_exercise=True,
        request_id=job.request_id,
    )


def warm_up(database_url: str, storage_url: str, key_store_url: str) -> None:
    """Open a new upload worker's engine, store and key store and compile its statements, so
    its first upload costs what any other does. Writes nothing."""
    resources = process_resources(database_url, storage_url, key_store_url)
    with resources.database.connection(write=True) as connection:
        with contextlib.suppress(ExerciseNotEligible):
            require_eligible(connection, exercise_id="", min_learners=0)
        prepare_upload_statements(connection)
        prepare_pending_statements(connection)
        _is_withdrawn(connection, Consent("", "", None, False))


def _arm_decode_alarm(seconds: float) -> None:
    """Only in a worker process's task thread: elsewhere the alarm would end the wrong process."""
    in_worker = multiprocessing.parent_process() is not None
    if in_worker and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, seconds)


_IS_WITHDRAWN = sa.select(WithdrawnToken.token_hash).where(
    WithdrawnToken.token_hash == sa.bindparam("token_hash")
)


def _is_withdrawn(connection: sa.Connection, consent: Consent) -> bool:
    found = connection.execute(_IS_WITHDRAWN, {"token_hash": consent.token_hash}).first()
    return found is not None


def withdraw(*, database: Database, store: BlobStore, keys: KeyStore, consent: Consent) -> int:
    """Remove the learner's pending clips from every bucket not yet closed; returns how many
    (P9). The token is refused from now until it expires (its hash is kept, not the learner).

    Rows go first, in one transaction with the audit entry; objects are deleted after the
    commit, and any the store fails to delete are left to the orphan sweeper. Then, if clips
    went, their residue (WAL frames, dead tuples, volume garbage) is purged too (P3, P4): on
    SQLite a WAL checkpoint costs a few milliseconds, on PostgreSQL a VACUUM of the clip
    tables, on SeaweedFS a volume compaction; a withdrawal is rare enough to pay for it.
    """
    with database.session(write=True) as session:
        _forget_expired_tokens(session)
        if session.get(WithdrawnToken, consent.token_hash) is None:
            session.add(
                WithdrawnToken(
                    token_hash=consent.token_hash, expires_at=expiry_day(consent.expires_at)
                )
            )
        object_keys = withdraw_learner(session, consent.learner_id, keys=keys)
        pending = [key for key in object_keys if key.startswith(PENDING_PREFIX)]
        append_audit(session, kind="withdrawal", body={"clips_removed": len(pending)})
    for object_key in object_keys:
        _delete_quietly(store, object_key)
    if object_keys:
        purge_residue(database, store)
    return len(pending)


def _forget_expired_tokens(session: Session) -> None:
    """A token past its expiry is refused by its signature check; its hash need not stay."""
    session.execute(sa.delete(WithdrawnToken).where(WithdrawnToken.expires_at < time.time()))


def _delete_quietly(store: BlobStore, object_key: str) -> None:
    # A failed delete leaves an object without a row, which the orphan sweeper removes.
    with contextlib.suppress(ChorusError, OSError):
        store.delete(object_key)
