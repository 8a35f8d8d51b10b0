"""Routes of the composition root: the auditor's run of every domain's checks, and the home
page that points a visitor to the rest.

``GET /v1/audit/verify`` admits only the ``auditor`` role (P11). ``GET /`` and
``GET /favicon.ico`` need no key and show no data.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from chorus.audit import explain, run_audit
from core.deps import AuditorRole, DatabaseDep, KeyStoreDep, StoreDep
from policies.deps import PolicyDep
from policies.models import AuditVerifyRead, CheckRead, FindingRead

router = APIRouter(tags=["audit"])
home_router = APIRouter(include_in_schema=False)

_FAVICON = Path(__file__).resolve().parent / "static" / "favicon.ico"
_HOME_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# Relative links, so that the page works under a proxy's path prefix as the console does.
_HOME_LINKS = (
    ("docs", "the API, browsable (every route, its roles and problem codes)"),
    ("openapi.json", "the OpenAPI document"),
    ("review", "the review console for course contributors (contributor key)"),
    ("healthz", "liveness: the process answers"),
    ("readyz", "readiness: the database and the blob store answer"),
    ("metrics", "Prometheus counters (admin or auditor key in X-API-Key)"),
)


@cache
def _home_page(title: str) -> str:
    items = "".join(f'<li><a href="{href}">/{href}</a> — {text}</li>' for href, text in _HOME_LINKS)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<title>{title}</title><link rel="icon" href="favicon.ico"></head><body>'
        f"<h1>{title}</h1><p>Speech clips collected with consent and released only in batches "
        "of at least k learners.</p>"
        f"<ul>{items}</ul></body></html>"
    )


@home_router.get("/")
def home(request: Request) -> HTMLResponse:
    """Links to the API documentation, the review console and the health routes."""
    return HTMLResponse(_home_page(request.app.title), headers=_HOME_HEADERS)


@home_router.get("/favicon.ico")
def favicon() -> Response:
    return Response(
        _FAVICON.read_bytes(),
        media_type="image/vnd.microsoft.icon",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/v1/audit/verify", response_model=AuditVerifyRead)
def verify(
    _role: AuditorRole,
    policy: PolicyDep,
    database: DatabaseDep,
    store: StoreDep,
    keys: KeyStoreDep,
) -> AuditVerifyRead:
    """Run every audit check against the database and the store; list the findings, each
    with its likely cause and remedy. A check that does not apply to this deployment (SQLite's
    settings on PostgreSQL, file modes with no local file) is ``n/a`` and says why."""
    report = run_audit(database=database, store=store, policy=policy, key_store=keys)
    return AuditVerifyRead(
        ok=report.ok,
        findings=[
            FindingRead(
                check=f.check,
                invariant=f.invariant,
                message=f.message,
                subject=f.subject,
                cause=explain(f.check).cause,
                remedy=explain(f.check).remedy,
            )
            for f in report.findings
        ],
        checks=[
            CheckRead(
                name=result.name,
                invariants=list(result.invariants),
                description=result.description,
                findings=len(result.findings),
                status=result.status.value,
                not_applicable=result.not_applicable,
            )
            for result in report.results
        ],
    )
