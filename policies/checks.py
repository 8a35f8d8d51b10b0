"""The auditor's checks, run straight against the database and the store.

Each check reads the live schema, rows and objects rather than the service's own summaries
where it can, and returns findings with a stable ``check`` id. Together they cover P3 (bucket
keys destroyed, canaries absent), P4 (no timestamp columns, no time-ordered ids), P6 (k
contributors per release, object counts match manifests, nothing pending under a release
prefix), P7 (released audio is the service's own FLAC), P8 (the audit chain) and P10
(retention). ``chorus audit`` and ``GET /v1/audit/verify`` both run ``run_audit``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aggregate.tables import Bucket, ReleaseCycle
from core.db import Database
from core.storage import BlobStore
from policies.audit import verify_chain
from policies.canary import scan_for_canaries
from policies.context import AuditContext
from policies.findings import Finding
from policies.policy import Policy
from policies.release_checks import (
    check_pending_isolation,
    check_release_entries,
    check_released_media,
    check_releases,
)
from policies.schema_checks import check_ids, check_timestamp_columns


@dataclass(frozen=True)
class CheckResult:
    name: str
    invariants: tuple[str, ...]
    description: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class AuditReport:
    results: tuple[CheckResult, ...]

    @property
    def findings(self) -> list[Finding]:
        return [finding for result in self.results for finding in result.findings]

    @property
    def ok(self) -> bool:
        return not self.findings


CheckFn = Callable[[AuditContext], Iterable[Finding]]


@dataclass(frozen=True)
class Check:
    name: str
    invariants: tuple[str, ...]
    description: str
    run: CheckFn


# --- P10: retention --------------------------------------------------------------------------


def check_retention(ctx: AuditContext) -> Iterable[Finding]:
    """No pending bucket has waited more than retention_cycles release cycles."""
    with ctx.database.session() as session:
        current = _current_cycle(session)
        stale = session.execute(
            sa.select(Bucket.id, Bucket.opened_cycle)
            .where(Bucket.state == "open")
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


def _current_cycle(session: Session) -> int:
    row = session.get(ReleaseCycle, 1)
    return row.current if row is not None else 0

# --- P8: audit chain -------------------------------------------------------------------------


def check_audit_chain(ctx: AuditContext) -> Iterable[Finding]:
    """The hash chain verifies from the first entry to the last."""
    with ctx.database.session() as session:
        status = verify_chain(session)
    if not status.ok:
        yield Finding(
            "audit_chain_broken",
            "P8",
            f"the audit chain breaks at entry {status.first_broken_seq}: {status.reason}",
            str(status.first_broken_seq),
        )

# --- P3: keys and canaries -------------------------------------------------------------------


def check_bucket_keys(ctx: AuditContext) -> Iterable[Finding]:
    """Released and purged buckets no longer hold the key that links their contributor tags."""
    with ctx.database.session() as session:
        kept = session.execute(
            sa.select(Bucket.id, Bucket.state)
            .where(Bucket.state.in_(("released", "purged")), Bucket.bucket_key.is_not(None))
            .order_by(Bucket.id)
        ).all()
    for bucket_id, state in kept:
        yield Finding(
            "bucket_key_kept",
            "P3",
            f"{state} bucket {bucket_id} still holds its contributor-tag key",
            bucket_id,
        )


def check_canaries(ctx: AuditContext) -> Iterable[Finding]:
    """No stored object, database row or log file contains any canary string."""
    return scan_for_canaries(
        ctx.engine,
        ctx.store,
        canaries=ctx.canaries,
        log_dirs=ctx.log_dirs,
        object_keys=ctx.keys(""),
    )


CHECKS: tuple[Check, ...] = (
    Check("releases", ("P6",), "k contributors per release; objects match manifests",
          check_releases),
    Check("released_media", ("P7",), "released clips are the service's own clean FLAC",
          check_released_media),
    Check("retention", ("P10",), "no pending bucket past retention", check_retention),
    Check("timestamp_columns", ("P4",), "no time-typed column on clip or bucket tables",
          check_timestamp_columns),
    Check("ids", ("P4",), "ids and object names are random, not time-ordered", check_ids),
    Check("audit_chain", ("P8",), "the audit hash chain verifies", check_audit_chain),
    Check("release_entries", ("P8",), "every release is in the audit log with its counts",
          check_release_entries),
    Check("bucket_keys", ("P3",), "released and purged buckets hold no key",
          check_bucket_keys),
    Check("pending_isolation", ("P6",), "no pending clip readable under a release prefix",
          check_pending_isolation),
    Check("canaries", ("P3", "P4"), "no canary string in objects, rows or logs",
          check_canaries),
)


def run_audit(
    *,
    database: Database,
    store: BlobStore,
    policy: Policy,
    canaries: Sequence[str] = (),
    log_dirs: Sequence[Path] = (),
) -> AuditReport:
    """Run every check; the canary scan only when canaries are given.

    Raises ChorusError subclasses (database or storage unavailable) when the audit cannot run.
    """
    ctx = AuditContext(
        database=database,
        store=store,
        policy=policy,
        canaries=tuple(canary for canary in canaries if canary),
        log_dirs=tuple(log_dirs),
    )
    results = []
    for check in CHECKS:
        if check.name == "canaries" and not ctx.canaries:
            continue
        findings = tuple(check.run(ctx))
        results.append(CheckResult(check.name, check.invariants, check.description, findings))
    return AuditReport(tuple(results))
