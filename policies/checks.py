"""The auditor's machinery and the checks of the policies domain.

A check reads the live schema, rows and objects rather than the service's own summaries where it
can, and yields findings with a stable ``check`` id. Each domain owns the checks of its
invariants as a ``CHECKS`` tuple in its ``checks.py``; the composition root (``chorus.audit``)
puts them together for ``chorus audit`` and ``GET /v1/audit/verify``, which run them through
``run_checks``. This module holds P8 (the audit chain) and the canary scan (P3, P4), which reads
every table, object and log file whatever domain wrote it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from core.db import Database
from core.keystore import KeyStore
from core.storage import BlobStore
from policies.audit import verify_chain
from policies.canary import scan_for_canaries
from policies.context import AuditContext
from policies.findings import Explanation, Finding
from policies.policy import Policy
from policies.residue_checks import (
    RESIDUE_EXPLANATIONS,
    check_clip_table_rowid,
    check_file_modes,
    check_sqlite_pragmas,
    unless_local_files,
    unless_sqlite,
)


class CheckStatus(StrEnum):
    OK = "ok"
    FAIL = "fail"
    # The check has nothing to look at in this deployment (e.g. SQLite's settings on
    # PostgreSQL); the result says why.
    NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class CheckResult:
    name: str
    invariants: tuple[str, ...]
    description: str
    findings: tuple[Finding, ...]
    not_applicable: str | None = None

    @property
    def status(self) -> CheckStatus:
        if self.not_applicable is not None:
            return CheckStatus.NOT_APPLICABLE
        return CheckStatus.FAIL if self.findings else CheckStatus.OK


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
# Why a check does not apply to this deployment, or None when it does.
ApplicabilityFn = Callable[[AuditContext], str | None]


@dataclass(frozen=True)
class Check:
    name: str
    invariants: tuple[str, ...]
    description: str
    run: CheckFn
    # A check that only runs when the auditor gave canary strings to look for.
    needs_canaries: bool = False
    not_applicable: ApplicabilityFn | None = None


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


# --- P3, P4: canaries -----------------------------------------------------------------------


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
    Check("audit_chain", ("P8",), "the audit hash chain verifies", check_audit_chain),
    Check(
        "canaries",
        ("P3", "P4"),
        "no canary string in objects, rows or logs",
        check_canaries,
        needs_canaries=True,
    ),
    Check(
        "file_modes",
        ("P3",),
        "database and file store files are 0600, folders 0700",
        check_file_modes,
        not_applicable=unless_local_files,
    ),
    Check(
        "sqlite_pragmas",
        ("P3", "P4"),
        "SQLite overwrites deleted content (secure_delete)",
        check_sqlite_pragmas,
        not_applicable=unless_sqlite,
    ),
    Check(
        "clip_table_rowid",
        ("P4",),
        "pending clip tables have no insertion-ordered rowid",
        check_clip_table_rowid,
        not_applicable=unless_sqlite,
    ),
)

EXPLANATIONS: Mapping[str, Explanation] = {
    "audit_chain_broken": Explanation(
        cause="an audit entry was edited, deleted or inserted after it was written (a direct "
        "database edit, or a restore of part of the database)",
        remedy="restore the audit_entries table from a backup taken before the entry named; "
        "review who had write access to the database at that time",
    ),
    "canary_found": Explanation(
        cause="a value the auditor planted (as a learner id, metadata field or audio) was "
        "stored or logged where the service must drop it: a code path or a proxy keeps "
        "what it should not",
        remedy="find the writer from the subject (object, table.column or log file), fix it, "
        "then delete the stored copies and rotate the logs that hold it",
    ),
    **RESIDUE_EXPLANATIONS,
}


def run_checks(
    checks: Sequence[Check],
    *,
    database: Database,
    store: BlobStore,
    policy: Policy,
    canaries: Sequence[str] = (),
    log_dirs: Sequence[Path] = (),
    key_store: KeyStore | None = None,
) -> AuditReport:
    """Run ``checks`` in order; those that need canaries only when canaries are given.

    Raises ChorusError subclasses (database or storage unavailable) when the audit cannot run.
    """
    ctx = AuditContext(
        database=database,
        store=store,
        policy=policy,
        canaries=tuple(canary for canary in canaries if canary),
        log_dirs=tuple(log_dirs),
        key_store=key_store,
    )
    results = []
    for check in checks:
        if check.needs_canaries and not ctx.canaries:
            continue
        reason = check.not_applicable(ctx) if check.not_applicable is not None else None
        if reason is not None:
            results.append(CheckResult(check.name, check.invariants, check.description, (), reason))
            continue
        findings = tuple(check.run(ctx))
        results.append(CheckResult(check.name, check.invariants, check.description, findings))
    return AuditReport(tuple(results))
