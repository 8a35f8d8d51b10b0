"""Routes of the composition root: the auditor's run of every domain's checks.

``GET /v1/audit/verify`` admits only the ``auditor`` role (P11).
"""

from __future__ import annotations

from fastapi import APIRouter

from chorus.audit import run_audit
from core.deps import AuditorRole, DatabaseDep, KeyStoreDep, StoreDep
from policies.deps import PolicyDep
from policies.models import AuditVerifyRead, CheckRead, FindingRead

router = APIRouter(tags=["audit"])


@router.get("/v1/audit/verify", response_model=AuditVerifyRead)
def verify(
    _role: AuditorRole,
    policy: PolicyDep,
    database: DatabaseDep,
    store: StoreDep,
    keys: KeyStoreDep,
) -> AuditVerifyRead:
    """Run every audit check against the database and the store; list the findings."""
    report = run_audit(database=database, store=store, policy=policy, key_store=keys)
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
