"""The tamper-evident audit log (P8): an append-only SHA-256 hash chain.

Each entry's hash covers its sequence number, kind, cycle, day, canonical JSON body and the
previous entry's hash, so editing, deleting or reordering any entry breaks every later link.
Entries carry a release-cycle number and a day, never a finer time (P4).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.db import transaction_lock
from policies.tables import AuditEntry, ReleaseCycle

GENESIS_HASH = "0" * 64
_LOCK_KEY = 0x43484F52  # "CHOR": serializes appends across processes


def canonical_json(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(*, seq: int, kind: str, cycle: int, day: dt.date, body: str, prev_hash: str) -> str:
    material = "\n".join([str(seq), kind, str(cycle), day.isoformat(), body, prev_hash])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def current_cycle(session: Session | sa.Connection) -> int:
    """The number of completed release cycles (0 before the first)."""
    current = session.execute(
        sa.select(ReleaseCycle.current).where(ReleaseCycle.id == 1)
    ).scalar_one_or_none()
    return current if current is not None else 0


def lock_chain(session: Session) -> None:
    """Take the chain's append lock until the transaction ends.

    Concurrent appenders take turns (``core.db.transaction_lock``); it may be taken again in
    the same transaction.
    """
    transaction_lock(session, _LOCK_KEY)


def append(session: Session, *, kind: str, body: Mapping[str, Any]) -> AuditEntry:
    """Append one entry inside the caller's transaction (see ``lock_chain``)."""
    lock_chain(session)
    last = session.execute(
        sa.select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq = 1 if last is None else last.seq + 1
    prev_hash = GENESIS_HASH if last is None else last.hash
    text = canonical_json(body)
    day = dt.datetime.now(dt.UTC).date()
    cycle = current_cycle(session)
    entry = AuditEntry(
        seq=seq,
        kind=kind,
        body=text,
        cycle=cycle,
        day=day,
        prev_hash=prev_hash,
        hash=entry_hash(seq=seq, kind=kind, cycle=cycle, day=day, body=text, prev_hash=prev_hash),
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class ChainStatus:
    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None


def iter_entries(session: Session, *, batch: int = 1000) -> Iterator[AuditEntry]:
    after = 0
    while True:
        rows = (
            session.execute(
                sa.select(AuditEntry)
                .where(AuditEntry.seq > after)
                .order_by(AuditEntry.seq)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def verify_chain(session: Session) -> ChainStatus:
    """Walk the chain from the start and report the first broken link."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    count = 0
    for entry in iter_entries(session):
        count += 1
        if entry.seq != expected_seq:
            return ChainStatus(False, count, entry.seq, f"entry {expected_seq} is missing")
        if entry.prev_hash != prev_hash:
            return ChainStatus(False, count, entry.seq, "previous-hash link does not match")
        recomputed = entry_hash(
            seq=entry.seq,
            kind=entry.kind,
            cycle=entry.cycle,
            day=entry.day,
            body=entry.body,
            prev_hash=entry.prev_hash,
        )
        if recomputed != entry.hash:
            return ChainStatus(False, count, entry.seq, "entry content does not match its hash")
        prev_hash = entry.hash
        expected_seq += 1
    return ChainStatus(True, count)
