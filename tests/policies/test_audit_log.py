"""The hash-chained audit log (P8): appends link, any edit is found at its first broken link."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.db import Database
from policies.audit import GENESIS_HASH, append, verify_chain
from policies.policy import load_policy
from policies.service import last_recorded_policy_hash, record_policy_load
from policies.tables import AuditEntry


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    db.upgrade()
    yield db
    db.dispose()


def _fill(database: Database) -> None:
    with database.session() as session:
        append(session, kind="key_created", body={"role": "auditor", "name": "ops"})
        append(session, kind="release", body={"release_id": "r1", "contributor_count": 7, "k": 5})
        append(session, kind="purge", body={"bucket_id": "b1", "clip_count": 2})
        append(session, kind="withdrawal", body={"clips_removed": 1})


def _execute(database: Database, statement: str, **params: object) -> None:
    with database.session() as session:
        session.execute(sa.text(statement), params)


def test_appends_form_a_chain(database: Database) -> None:
    _fill(database)
    with database.session() as session:
        entries = session.execute(sa.select(AuditEntry).order_by(AuditEntry.seq)).scalars().all()
        status = verify_chain(session)
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert json.loads(entries[1].body) == {"contributor_count": 7, "k": 5, "release_id": "r1"}
    assert entries[1].body == '{"contributor_count":7,"k":5,"release_id":"r1"}'  # canonical
    assert status.ok
    assert status.entries == 4
    assert status.first_broken_seq is None


def test_an_empty_chain_verifies(database: Database) -> None:
    with database.session() as session:
        status = verify_chain(session)
    assert status.ok
    assert status.entries == 0


@pytest.mark.parametrize(
    ("statement", "broken", "reason"),
    [
        (
            "UPDATE audit_entries SET body = REPLACE(body, '7', '70') WHERE seq = 2",
            2,
            "content does not match",
        ),
        ("UPDATE audit_entries SET kind = 'release' WHERE seq = 3", 3, "content does not match"),
        ("UPDATE audit_entries SET day = '2001-01-01' WHERE seq = 1", 1, "content does not match"),
        ("DELETE FROM audit_entries WHERE seq = 2", 3, "entry 2 is missing"),
        ("DELETE FROM audit_entries WHERE seq = 1", 2, "entry 1 is missing"),
    ],
)
def test_tampering_is_reported_at_the_first_broken_link(
    database: Database, statement: str, broken: int, reason: str
) -> None:
    _fill(database)
    _execute(database, statement)
    with database.session() as session:
        status = verify_chain(session)
    assert not status.ok
    assert status.first_broken_seq == broken
    assert status.reason is not None
    assert reason in status.reason


def test_rewriting_an_entry_with_a_fresh_hash_breaks_the_next_link(database: Database) -> None:
    _fill(database)
    with database.session() as session:
        entry = session.get(AuditEntry, 2)
        assert entry is not None
        from policies.audit import entry_hash

        entry.body = '{"contributor_count":70,"k":5,"release_id":"r1"}'
        entry.hash = entry_hash(
            seq=entry.seq,
            kind=entry.kind,
            cycle=entry.cycle,
            day=entry.day,
            body=entry.body,
            prev_hash=entry.prev_hash,
        )
    with database.session() as session:
        status = verify_chain(session)
    assert (status.ok, status.first_broken_seq) == (False, 3)
    assert status.reason == "previous-hash link does not match"


def test_entries_hold_a_cycle_and_a_day_never_a_time(database: Database) -> None:
    columns = {
        c["name"]: c["type"] for c in sa.inspect(database.engine).get_columns("audit_entries")
    }
    assert isinstance(columns["day"], sa.Date)
    assert not isinstance(columns["day"], sa.DateTime)
    assert not any(isinstance(t, sa.DateTime | sa.Time) for t in columns.values())


def test_policy_loads_are_recorded_only_when_the_policy_changes(database: Database) -> None:
    demo, default = load_policy("demo"), load_policy("default")
    assert record_policy_load(database, demo) is True
    assert record_policy_load(database, demo) is False  # a restart with the same policy
    assert record_policy_load(database, default) is True
    assert record_policy_load(database, demo) is True  # switching back is a change too
    with database.session() as session:
        bodies = [
            json.loads(body)
            for body in session.execute(
                sa.select(AuditEntry.body)
                .where(AuditEntry.kind == "policy_loaded")
                .order_by(AuditEntry.seq)
            ).scalars()
        ]
        assert last_recorded_policy_hash(session) == demo.content_hash
        assert verify_chain(session).ok
    assert [b["name"] for b in bodies] == ["demo", "default", "demo"]
    assert bodies[1]["policy"]["k"] == 25
    assert bodies[1]["content_hash"] == default.content_hash
