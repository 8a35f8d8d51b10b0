"""The auditor's whole check list, composed from every domain's ``checks.py``.

Each domain owns the checks of its invariants; only the composition root knows them all. The
order here is the order of ``chorus audit``'s report and of ``GET /v1/audit/verify``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aggregate import checks as aggregate_checks
from chorus import checks as chorus_checks
from core.db import Database
from core.keystore import KeyStore
from core.storage import BlobStore
from policies import checks as policies_checks
from policies.checks import AuditReport, Check, run_checks
from policies.findings import Explanation
from policies.policy import Policy

_REPORT_ORDER = (
    "releases",
    "released_media",
    "recordings_released_once",
    "retention",
    "timestamp_columns",
    "ids",
    "audit_chain",
    "release_entries",
    "bucket_keys",
    "pending_isolation",
    "pending_sealed",
    "canaries",
    "release_policies",
    "release_exercises",
    "file_modes",
    "sqlite_pragmas",
    "clip_table_rowid",
    "key_store_persistence",
    "metrics_exposition",
)


def _compose(*domains: Sequence[Check]) -> tuple[Check, ...]:
    by_name = {check.name: check for checks in domains for check in checks}
    if set(by_name) != set(_REPORT_ORDER):
        raise RuntimeError(f"audit checks and report order differ: {sorted(by_name)}")
    return tuple(by_name[name] for name in _REPORT_ORDER)


AUDIT_CHECKS = _compose(aggregate_checks.CHECKS, policies_checks.CHECKS, chorus_checks.CHECKS)
# Every finding id's likely cause and remedy (a test checks that every id yielded is here).
EXPLANATIONS: Mapping[str, Explanation] = {
    **aggregate_checks.EXPLANATIONS,
    **policies_checks.EXPLANATIONS,
    **chorus_checks.EXPLANATIONS,
}
_UNEXPLAINED = Explanation(
    cause="not described", remedy="see docs/privacy.md for the invariant named"
)


def explain(finding_check: str) -> Explanation:
    """The likely cause and remedy of a finding with this id."""
    return EXPLANATIONS.get(finding_check, _UNEXPLAINED)


def run_audit(
    *,
    database: Database,
    store: BlobStore,
    policy: Policy,
    canaries: Sequence[str] = (),
    log_dirs: Sequence[Path] = (),
    key_store: KeyStore | None = None,
) -> AuditReport:
    """Run every domain's checks against the database and the store (and the key store)."""
    return run_checks(
        AUDIT_CHECKS,
        database=database,
        store=store,
        policy=policy,
        canaries=canaries,
        log_dirs=log_dirs,
        key_store=key_store,
    )
