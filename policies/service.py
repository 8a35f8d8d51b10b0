"""What auditors read of the policies domain: the policy in force and the audit log (P8).

``record_policy_load`` appends a ``policy_loaded`` entry whenever the service starts with a
policy whose content hash differs from the last one recorded, so every change of threshold is
in the chain.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.db import Database
from core.errors import Conflict, DatabaseBusy
from policies.audit import ChainStatus, append, lock_chain, verify_chain
from policies.policy import Policy
from policies.tables import AuditEntry

POLICY_LOADED = "policy_loaded"
_logger = logging.getLogger("chorus.audit")


def last_recorded_policy_hash(session: Session) -> str | None:
    body = session.execute(
        sa.select(AuditEntry.body)
        .where(AuditEntry.kind == POLICY_LOADED)
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    ).scalar_one_or_none()
    if body is None:
        return None
    try:
        recorded = json.loads(body).get("content_hash")
    except (ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, str) else None


def policy_entry_body(policy: Policy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "version": policy.version,
        "content_hash": policy.content_hash,
        "policy": policy.model_dump(mode="json"),
    }


def record_policy_load_in(session: Session, policy: Policy) -> AuditEntry | None:
    """Append ``policy_loaded`` unless the last recorded policy has the same content hash."""
    lock_chain(session)
    if last_recorded_policy_hash(session) == policy.content_hash:
        return None
    return append(session, kind=POLICY_LOADED, body=policy_entry_body(policy))


def record_policy_load(database: Database, policy: Policy, *, attempts: int = 3) -> bool:
    """Record the policy at start-up; True when a new entry was appended.

    Replicas starting together may race for the next sequence number; the loser retries and
    then finds the entry already written.
    """
    for attempt in range(1, attempts + 1):
        try:
            with database.session(write=True) as session:
                appended = record_policy_load_in(session, policy) is not None
        except (Conflict, DatabaseBusy):  # lost the race for a sequence number, or a lock
            if attempt == attempts:
                raise
            continue
        if appended:
            _logger.info(
                "policy recorded in the audit log",
                extra={"policy": policy.name, "version": policy.version},
            )
        return appended
    return False


def get_entries(session: Session, *, after: int, limit: int) -> list[AuditEntry]:
    return list(
        session.execute(
            sa.select(AuditEntry)
            .where(AuditEntry.seq > after)
            .order_by(AuditEntry.seq)
            .limit(limit)
        ).scalars()
    )


def count_entries(session: Session) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(AuditEntry)).scalar_one()


def chain_status(session: Session) -> ChainStatus:
    return verify_chain(session)


def parse_body(entry: AuditEntry) -> dict[str, Any]:
    try:
        body = json.loads(entry.body)
    except ValueError:
        return {"unparsable": True}
    return body if isinstance(body, dict) else {"value": body}
