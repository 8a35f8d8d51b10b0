"""The audit checks of the aggregate domain: releases and their media (P6, P7, P8), the clip
tables' schema and ids (P4), bucket keys (P3) and retention (P10).

The composition root adds these to every other domain's checks (``chorus.audit``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa

from aggregate.release_checks import (
    check_pending_isolation,
    check_pending_sealed,
    check_recordings_released_once,
    check_release_entries,
    check_release_exercises,
    check_release_policies,
    check_released_media,
    check_releases,
)
from aggregate.schema_checks import check_ids, check_timestamp_columns
from aggregate.tables import PENDING_STATES, Bucket
from policies.audit import current_cycle
from policies.checks import Check
from policies.context import AuditContext
from policies.findings import Explanation, Finding

# --- P10: retention --------------------------------------------------------------------------


def check_retention(ctx: AuditContext) -> Iterable[Finding]:
    """No pending bucket has waited more than retention_cycles release cycles."""
    with ctx.database.session() as session:
        current = current_cycle(session)
        stale = session.execute(
            sa.select(Bucket.id, Bucket.opened_cycle)
            .where(Bucket.state.in_(PENDING_STATES))
            .where(Bucket.opened_cycle < current - ctx.policy.retention_cycles)
            .order_by(Bucket.id)
        ).all()
    for bucket_id, opened in stale:
        yield Finding(
            "bucket_past_retention",
            "P10",
            f"bucket {bucket_id} has been pending for {current - opened} release cycles; "
            f"the policy allows {ctx.policy.retention_cycles}",
            bucket_id,
        )


# --- P3: bucket keys -------------------------------------------------------------------------

# Tables that hold contributor tags or clip facts: none may hold a key to link the tags.
_KEYLESS_TABLES = ("buckets", "pending_clips", "releases", "released_clips")
_BINARY_TYPES = ("BLOB", "BYTEA", "BINARY", "VARBINARY")


def check_bucket_keys(ctx: AuditContext) -> Iterable[Finding]:
    """No clip or bucket table has a column that could hold a bucket key (P3): the keys live
    only in memory, so a copy of the database cannot link a contributor tag to anyone."""
    inspector = sa.inspect(ctx.engine)
    present = set(inspector.get_table_names())
    for table in _KEYLESS_TABLES:
        if table not in present:
            continue
        for column in inspector.get_columns(table):
            type_name = str(column["type"]).upper()
            named_key = "key" in column["name"].lower() and column["name"] not in (
                "object_key",
                "manifest_key",
            )
            # Sealed values are binary by nature; ``pending_sealed`` checks that they are sealed.
            sealed = column["name"].startswith("sealed_")
            binary = any(kind in type_name for kind in _BINARY_TYPES) and not sealed
            if named_key or binary:
                yield Finding(
                    "bucket_key_kept",
                    "P3",
                    f"column {table}.{column['name']} ({type_name}) could hold a bucket key; "
                    "bucket keys must never reach the database",
                    f"{table}.{column['name']}",
                )


CHECKS: tuple[Check, ...] = (
    Check(
        "releases", ("P6",), "k contributors per release; objects match manifests", check_releases
    ),
    Check(
        "recordings_released_once",
        ("P6",),
        "no recording is in two releases",
        check_recordings_released_once,
    ),
    Check(
        "released_media",
        ("P7",),
        "released clips are byte for byte the service's FLAC",
        check_released_media,
    ),
    Check("retention", ("P10",), "no pending bucket past retention", check_retention),
    Check(
        "timestamp_columns",
        ("P4",),
        "no time-typed column on clip or bucket tables",
        check_timestamp_columns,
    ),
    Check("ids", ("P4",), "ids and object names are random, not time-ordered", check_ids),
    Check(
        "release_entries",
        ("P8",),
        "every release is in the audit log with its counts",
        check_release_entries,
    ),
    Check("bucket_keys", ("P3",), "no bucket key is stored in the database", check_bucket_keys),
    Check(
        "pending_isolation",
        ("P6",),
        "no pending clip readable under a release prefix",
        check_pending_isolation,
    ),
    Check(
        "pending_sealed",
        ("P4",),
        "every pending object and row value is sealed",
        check_pending_sealed,
    ),
    Check(
        "release_policies",
        ("P8",),
        "every release's policy was recorded as loaded",
        check_release_policies,
    ),
    Check(
        "release_exercises",
        ("P5",),
        "every release's exercise met min_exercise_learners",
        check_release_exercises,
    ),
)

_BY_HAND = "find the writer (the store's or the database's access logs)"

EXPLANATIONS: Mapping[str, Explanation] = {
    "timestamp_column": Explanation(
        cause="a migration or a manual change added a date or time column to a clip or "
        "bucket table",
        remedy="drop the column in a new migration; release days are kept as days, nothing finer",
    ),
    "time_ordered_id": Explanation(
        cause="rows written by another tool or an old build with auto-increment or time-based "
        "ids (UUID v1/v6/v7, ULID), which say in what order rows arrived",
        remedy=f"{_BY_HAND}; make it take ids from core.ids.new_id (random) and re-key the "
        "rows it wrote",
    ),
    "non_random_id": Explanation(
        cause="rows or objects named by hand or by another tool, not by core.ids.new_id",
        remedy=f"{_BY_HAND}; re-key or remove what it wrote",
    ),
    "release_unrecorded": Explanation(
        cause="objects copied under releases/ by hand, or a database restored from a backup "
        "older than the store",
        remedy="if the release is genuine, restore its row from a later backup; otherwise "
        "delete the objects under the release's prefix",
    ),
    "release_below_k": Explanation(
        cause="the policy's k was raised after this release, or the release row was edited",
        remedy="if k was raised, the release predates it: withdraw it if the new k must "
        "apply to past releases; otherwise compare the row with its audit entry",
    ),
    "release_manifest_missing": Explanation(
        cause="a release interrupted before its manifest was stored (not yet finished by a "
        "later run), or the manifest deleted or damaged in the store",
        remedy="run chorus release, which finishes interrupted releases; for a finished one, "
        "restore manifest.json from a backup",
    ),
    "release_manifest_mismatch": Explanation(
        cause="manifest.json or the release row was changed after the release",
        remedy="restore both from a backup; the release's audit entry says which is right",
    ),
    "release_object_count_mismatch": Explanation(
        cause="objects deleted, added or truncated under the release's prefix (store "
        "maintenance, an interrupted copy or restore)",
        remedy="restore what the manifest lists from a backup and remove what it does not "
        "list, then audit again",
    ),
    "released_clip_not_clean_flac": Explanation(
        cause="a released clip is damaged in the store or was replaced by a file the "
        "service's decoder refuses",
        remedy="restore it from a backup or replica; several at once point to the store's health",
    ),
    "released_clip_metadata": Explanation(
        cause="a released clip carries tags, pictures or application blocks: another tool "
        "rewrote it after the release",
        remedy=f"{_BY_HAND}; restore the clip from a backup or withdraw it from the release",
    ),
    "released_clip_not_canonical": Explanation(
        cause="a released clip is not the service's own encoding of its samples: re-encoded "
        "or edited after the release",
        remedy=f"{_BY_HAND}; restore the clip from a backup or withdraw it from the release",
    ),
    "release_not_audited": Explanation(
        cause="the release's audit entry is missing: removed from the log, or the log was "
        "restored from a backup older than the release",
        remedy="the audit_chain check says whether entries were removed; restore the log "
        "from a backup that holds the entry",
    ),
    "release_audit_mismatch": Explanation(
        cause="the release row was edited after its audit entry was written (the entry is "
        "hash-chained; the row is not)",
        remedy="restore the row from a backup; the audit entry holds the counts as released",
    ),
    "release_policy_unrecorded": Explanation(
        cause="the release ran under a policy whose load never reached the audit log, e.g. "
        "the log was restored from an older backup, or a release ran from a tool other "
        "than chorus serve and chorus release",
        remedy="identify the policy by its content hash and record why it is missing; run "
        "releases only through chorus serve or chorus release, which log the policy first",
    ),
    "release_exercise_rare": Explanation(
        cause="the usage catalog listed fewer learners for the exercise than the policy's "
        "min_exercise_learners when the release was made (or the minimum was raised)",
        remedy="check the catalog's history (PUT/PATCH /v1/exercises/usage); withdraw the "
        "release if the exercise was too rare to release",
    ),
    "pending_object_released": Explanation(
        cause="a pending object was copied under releases/, byte for byte (pending objects "
        "are sealed under their bucket's key, so two uploads of the same audio never share "
        "bytes, and a bucket refuses the same recording twice)",
        remedy="delete the copy and find who can write under releases/",
    ),
    "recording_released_twice": Explanation(
        cause="one upload stored twice (a retry after the key store lost the first one's "
        "record and its bucket's key), or one recording uploaded to two exercises or to a "
        "bucket after the first was released",
        remedy="compare the releases named; if it is one upload stored twice, find what "
        "flushed the key store",
    ),
    "pending_unsealed": Explanation(
        cause="a pending object or row value was written by something other than "
        "aggregate.pending (a tool, a restore of an old backup, a hand-made row), or a sealed "
        "object was altered",
        remedy="purge the bucket (its clips cannot be trusted to stay unlinkable) and find "
        "the writer",
    ),
    "bucket_past_retention": Explanation(
        cause="release cycles did not run or could not purge: the scheduler is off "
        "(CHORUS_SCHEDULER_ENABLED=false) with no chorus release in cron, or the job fails",
        remedy="run chorus release now (it purges expired buckets), then check the "
        "scheduler and the job's log lines",
    ),
    "bucket_key_kept": Explanation(
        cause="a migration added a column that can hold a key to a bucket table",
        remedy="drop the column; bucket keys live only in the key store "
        "(CHORUS_KEY_STORE_URL, memory only)",
    ),
}
