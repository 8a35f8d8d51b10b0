"""The auditor API of the policies domain (P8, P11): the policy in force and the audit log.

The releases with their thresholds are served by the aggregate domain and the checks by the
composition root, under the same ``/v1/audit`` prefix.

Every route admits only the ``auditor`` role.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from core.deps import AuditorRole, SessionDep
from policies import service
from policies.models import (
    AuditEntryRead,
    AuditLogPage,
    ChainStatusRead,
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
