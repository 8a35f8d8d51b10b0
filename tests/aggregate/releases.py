"""Running a release cycle as the scheduler does, and reading the audit log it leaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from aggregate.jobs import CycleReport, run_release_cycle
from core.db import Database
from policies.audit import verify_chain
from policies.policy import POLICY_DIR
from policies.tables import AuditEntry
from tests.keys import keys_for


def release_audit_entries(database: Database) -> list[dict[str, Any]]:
    """The bodies of the audit log's release entries, after checking the chain."""
    with database.session() as session:
        assert verify_chain(session).ok
        return [
            json.loads(body)
            for body in session.execute(
                sa.select(AuditEntry.body).where(AuditEntry.kind == "release")
            ).scalars()
        ]


def audit_log(database: Database) -> list[tuple[str, dict[str, Any]]]:
    """Every audit entry as (kind, body), in chain order, after checking the chain."""
    with database.session() as session:
        assert verify_chain(session).ok
        return [
            (kind, json.loads(body))
            for kind, body in session.execute(
                sa.select(AuditEntry.kind, AuditEntry.body).order_by(AuditEntry.seq)
            ).all()
        ]


def release_now(app: FastAPI) -> CycleReport:
    """One release cycle of the app's service, as its scheduler would run it."""
    return run_release_cycle(
        database=app.state.database,
        keys=keys_for(app.state.database),
        store=app.state.store,
        policy=app.state.policy,
        interval_s=3600,
    )


def write_policy(folder: Path, *, k: int) -> Path:
    """The demo policy file with another ``k``, written to ``folder`` as ``policy.toml``."""
    text = (POLICY_DIR / "demo.toml").read_text(encoding="utf-8")
    assert "k = 5\n" in text
    path = folder / "policy.toml"
    path.write_text(text.replace("k = 5\n", f"k = {k}\n"), encoding="utf-8")
    return path
