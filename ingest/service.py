"""Upload and withdrawal logic (no HTTP): the store step of the pipeline.

Upholds P3 (the learner id goes only into ``add_pending_clip``, which keeps a keyed tag), P4
(a random object key, no time anywhere, no per-clip log line), P6's cap (``ContributionLimit``
from the unique slot constraint) and P9 (withdrawal removes every pending clip of the learner).
An object whose row is refused is deleted at once; one whose row write ended with the database
unreachable (the commit may have landed) or that survives a crash between the two steps is
removed by the orphan sweeper (``ingest.jobs``) if no row refers to it.
"""

from __future__ import annotations

import contextlib

from aggregate.buckets import ClipFacts, add_pending_clip, pending_object_key, withdraw_learner
from core.db import Database
from core.errors import ChorusError, DatabaseUnavailable
from core.storage import BlobStore
from ingest.audio import AudioLimits, SanitizedClip
from ingest.catalog import require_eligible
from ingest.consent import Consent
from policies.audit import append as append_audit
from policies.policy import Policy


def audio_limits(policy: Policy) -> AudioLimits:
    return AudioLimits(
        min_duration_s=policy.min_duration_s,
        max_duration_s=policy.max_duration_s,
        min_sample_rate=policy.min_sample_rate,
        max_sample_rate=policy.max_sample_rate,
        output_sample_rate=policy.output_sample_rate,
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
    verify_exercise: bool = False,
) -> None:
    """Write the object under a random key, then its pending row; undo the object on failure.

    ``verify_exercise`` re-reads the exercise's eligibility in the row's own transaction.
    """
    object_key = pending_object_key()
    store.put(object_key, clip.flac)
    facts = ClipFacts(
        object_key=object_key,
        duration_s=clip.duration_s,
        sample_rate=clip.sample_rate,
        loudness_dbfs=clip.loudness_dbfs,
    )
    try:
        with database.session(write=True) as session:
            if verify_exercise:
                require_eligible(
                    session, exercise_id=exercise_id, min_learners=policy.min_exercise_learners
                )
            add_pending_clip(
                session,
                exercise_id=exercise_id,
                learner_id=consent.learner_id,
                clip=facts,
                max_clips_per_contributor=policy.max_clips_per_contributor,
            )
    except DatabaseUnavailable:
        # The commit may have landed although its answer was lost; deleting the object could
        # leave a row without its clip. If no row refers to it, the orphan sweeper removes it.
        raise
    except BaseException:
        _delete_quietly(store, object_key)
        raise


def withdraw(*, database: Database, store: BlobStore, consent: Consent) -> int:
    """Remove the learner's pending clips from every open bucket; returns how many (P9).

    Rows go first, in one transaction with the audit entry; objects are deleted after the
    commit, and any the store fails to delete are left to the orphan sweeper.
    """
    with database.session(write=True) as session:
        object_keys = withdraw_learner(session, consent.learner_id)
        append_audit(session, kind="withdrawal", body={"clips_removed": len(object_keys)})
    for object_key in object_keys:
        _delete_quietly(store, object_key)
    return len(object_keys)


def _delete_quietly(store: BlobStore, object_key: str) -> None:
    # A failed delete leaves an object without a row, which the orphan sweeper removes.
    with contextlib.suppress(ChorusError, OSError):
        store.delete(object_key)
