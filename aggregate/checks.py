"""The audit checks of the aggregate domain: releases and their media (P6, P7, P8), the clip
tables' schema and ids (P4), bucket keys (P3) and retention (P10).

The composition root adds these to every other domain's checks (``chorus.audit``).
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from aggregate.release_checks import (
    check_pending_isolation,
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
from policies.findings import Finding

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
            if named_key or any(binary in type_name for binary in _BINARY_TYPES):
                yield Finding(
                    "bucket_key_kept",
                    "P3",
                    f"column {table}.{column['name']} ({type_name}) could hold a bucket key; "
                    "bucket keys must never reach the database",
                    f"{table}.{column['name']}",
                )


CHECKS: tuple[Check, ...] = (
    Check("releases", ("P6",), "k contributors per release; objects match manifests",
          check_releases),
    Check("recordings_released_once", ("P6",), "no recording is in two releases",
          check_recordings_released_once),
    Check("released_media", ("P7",), "released clips are byte for byte the service's FLAC",
          check_released_media),
    Check("retention", ("P10",), "no pending bucket past retention", check_retention),
    Check("timestamp_columns", ("P4",), "no time-typed column on clip or bucket tables",
          check_timestamp_columns),
    Check("ids", ("P4",), "ids and object names are random, not time-ordered", check_ids),
    Check("release_entries", ("P8",), "every release is in the audit log with its counts",
          check_release_entries),
    Check("bucket_keys", ("P3",), "no bucket key is stored in the database",
          check_bucket_keys),
    Check("pending_isolation", ("P6",), "no pending clip readable under a release prefix",
          check_pending_isolation),
    Check("release_policies", ("P8",), "every release's policy was recorded as loaded",
          check_release_policies),
    Check("release_exercises", ("P5",), "every release's exercise met min_exercise_learners",
          check_release_exercises),
)
