"""The auditor API (P8, P11): the policy, releases with their thresholds, the log, the checks.

Every route admits only the ``auditor`` role.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from core.deps import AuditorRole, DatabaseDep, SessionDep, StoreDep
from policies import service
from policies.checks import run_audit
from policies.models import (
    AuditEntryRead,
    AuditLogPage,
    AuditReleasePage,
    AuditReleaseRead,
    AuditVerifyRead,
    ChainStatusRead,
    CheckRead,
    FindingRead,
    PolicyRead,
)
from policies.policy import Policy

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _policy(request: Request) -> Policy:
    policy: Policy = request.app.state.policy
    return policy


@router.get("/policy", response_model=PolicyRead)
def get_policy(request: Request, _role: AuditorRole, session: SessionDep) -> PolicyRead:
    """The policy in force, its version and content hash."""
    policy = _policy(request)
    recorded = service.last_recorded_policy_hash(session) == policy.content_hash
    return PolicyRead(
        **policy.model_dump(mode="json"),
        content_hash=policy.content_hash,
        recorded_in_audit_log=recorded,
    )


@router.get("/releases", response_model=AuditReleasePage)
def get_releases(
    request: Request,
    _role: AuditorRole,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,  # bounded: SQL integers are 64-bit
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditReleasePage:
    """Every release with its contributor count, clip count and the k in force."""
    policy_k = _policy(request).k
    items = [
        AuditReleaseRead(
            id=release.id,
            exercise_id=release.exercise_id,
            language=release.language,
            release_day=release.release_day,
            clip_count=release.clip_count,
            contributor_count=release.contributor_count,
            k_in_force=release.k_in_force,
            policy_hash=release.policy_hash,
            meets_k=release.contributor_count >= max(release.k_in_force, policy_k),
        )
        for release in service.get_releases(session, offset=offset, limit=limit)
    ]
    return AuditReleasePage(
        items=items, total=service.count_releases(session), offset=offset, limit=limit
    )


@router.get("/log", response_model=AuditLogPage)
def get_log(
    _role: AuditorRole,
    session: SessionDep,
    after: Annotated[
        int, Query(ge=0, le=2**62, description="return entries after this sequence")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditLogPage:
    """Audit entries in chain order, with the verification status of the whole chain."""
    entries = service.get_entries(session, after=after, limit=limit)
    status = service.chain_status(session)
    return AuditLogPage(
        items=[
            AuditEntryRead(
                seq=entry.seq,
                kind=entry.kind,
                cycle=entry.cycle,
                day=entry.day,
                body=service.parse_body(entry),
                prev_hash=entry.prev_hash,
                hash=entry.hash,
            )
            for entry in entries
        ],
        total=service.count_entries(session),
        next_after=entries[-1].seq if len(entries) == limit else None,
        chain=ChainStatusRead(
            ok=status.ok,
            entries=status.entries,
            first_broken_seq=status.first_broken_seq,
            reason=status.reason,
        ),
    )


@router.get("/verify", response_model=AuditVerifyRead)
def verify(
    request: Request, _role: AuditorRole, database: DatabaseDep, store: StoreDep
) -> AuditVerifyRead:
    """Run every audit check against the database and the store; list the findings."""
    report = run_audit(database=database, store=store, policy=_policy(request))
    return AuditVerifyRead(
        ok=report.ok,
        findings=[
            FindingRead(
                check=f.check, invariant=f.invariant, message=f.message, subject=f.subject
            )
            for f in report.findings
        ],
        checks=[
            CheckRead(
                name=result.name,
                invariants=list(result.invariants),
                description=result.description,
                findings=len(result.findings),
            )
            for result in report.results
        ],
    )
