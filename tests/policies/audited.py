"""A realistic audited state: real FSDD clips sanitized, pending, and one batch released.

Six learners record ``digit-7`` (k = 5 under the demo policy), so the release job releases it;
three learners record ``digit-3``, which stays pending. ``CliResult`` is what ``chorus audit``
reports (the ``run_audit_cli`` fixture runs it).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aggregate.release import release_ready_buckets
from aggregate.tables import PendingClip, Release
from core.db import Database
from core.settings import Settings
from core.storage import BlobStore
from ingest.audio import sanitize_audio
from ingest.service import audio_limits
from policies.audit import GENESIS_HASH, entry_hash
from policies.context import shard_members
from policies.policy import Policy
from policies.tables import AuditEntry
from tests.keys import keys_for
from tests.pending import seed_sanitized

RELEASED_LEARNERS = [f"learner-{n:03d}" for n in range(6)]
PENDING_LEARNERS = [f"learner-{n:03d}" for n in range(100, 103)]
SPEAKERS = ["jackson", "george", "lucas", "nicolas", "theo", "yweweler"]


@dataclass
class AuditedState:
    app: FastAPI
    client: TestClient
    settings: Settings
    database: Database
    store: BlobStore
    policy: Policy
    release_id: str
    pending_keys: list[str]
    learner_ids: list[str]

    def sql(self, statement: str, **params: Any) -> None:
        with self.database.session() as session:
            session.execute(sa.text(statement), params)

    def rehash_chain(self) -> None:
        """Renumber and rehash the whole audit chain, as an intruder covering tracks would."""
        with self.database.session() as session:
            entries = (
                session.execute(sa.select(AuditEntry).order_by(AuditEntry.seq)).scalars().all()
            )
            rows = [(e.kind, e.cycle, e.day, e.body) for e in entries]
            session.execute(sa.delete(AuditEntry))
            prev_hash = GENESIS_HASH
            for seq, (kind, cycle, day, body) in enumerate(rows, start=1):
                digest = entry_hash(
                    seq=seq, kind=kind, cycle=cycle, day=day, body=body, prev_hash=prev_hash
                )
                session.add(
                    AuditEntry(
                        seq=seq,
                        kind=kind,
                        cycle=cycle,
                        day=day,
                        body=body,
                        prev_hash=prev_hash,
                        hash=digest,
                    )
                )
                prev_hash = digest

    def released_clip_keys(self) -> list[str]:
        """The released clips as the auditor names them: ``<shard key>:<member>``."""
        return [
            f"{shard}:{name}"
            for shard in self._shards()
            for name, _data in shard_members(self.store.get(shard))
        ]

    def _shards(self) -> list[str]:
        return sorted(self.store.list(f"releases/{self.release_id}/shards/"))

    def get_clip(self, subject: str) -> bytes:
        shard, _, member = subject.partition(":")
        return dict(shard_members(self.store.get(shard)))[member]

    def put_clip(self, subject: str, data: bytes | None, *, rename: str | None = None) -> None:
        """Rewrite the clip's shard with ``data`` in place of the clip (None: without it),
        under the member name ``rename`` if given."""
        shard, _, member = subject.partition(":")
        members = list(shard_members(self.store.get(shard)))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, old in members:
                new = old if name != member else data
                if new is not None:
                    info = tarfile.TarInfo(rename if rename and name == member else name)
                    info.size = len(new)
                    tar.addfile(info, io.BytesIO(new))
        self.store.put(shard, buffer.getvalue())

    def manifest(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(
            self.store.get(f"releases/{self.release_id}/manifest.json")
        )
        return loaded

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.store.put(f"releases/{self.release_id}/manifest.json", json.dumps(manifest).encode())


def _record(
    database: Database,
    store: BlobStore,
    policy: Policy,
    *,
    exercise_id: str,
    learner_id: str,
    wav: Path,
) -> str:
    """What the upload path does after consent and eligibility: sanitize, store, record."""
    clip = sanitize_audio(wav.read_bytes(), audio_limits(policy))
    return seed_sanitized(
        database,
        store,
        exercise_id=exercise_id,
        learner_id=learner_id,
        clip=clip,
        max_clips_per_contributor=policy.max_clips_per_contributor,
    )


def build_audited_state(
    app: FastAPI, client: TestClient, settings: Settings, fsdd_dir: Path
) -> AuditedState:
    database: Database = app.state.database
    store: BlobStore = app.state.store
    policy: Policy = app.state.policy
    for learner, speaker in zip(RELEASED_LEARNERS, SPEAKERS, strict=True):
        _record(
            database,
            store,
            policy,
            exercise_id="digit-7",
            learner_id=learner,
            wav=fsdd_dir / f"7_{speaker}_1.wav",
        )
    outcomes = release_ready_buckets(database, store, policy, keys=keys_for(database))
    assert len(outcomes) == 1
    assert outcomes[0].contributor_count == len(RELEASED_LEARNERS)
    pending_keys = [
        _record(
            database,
            store,
            policy,
            exercise_id="digit-3",
            learner_id=learner,
            wav=fsdd_dir / f"3_{speaker}_2.wav",
        )
        for learner, speaker in zip(PENDING_LEARNERS, SPEAKERS, strict=False)
    ]
    with database.session() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Release)).scalar_one() == 1
        assert session.execute(
            sa.select(sa.func.count()).select_from(PendingClip)
        ).scalar_one() == len(PENDING_LEARNERS)
    return AuditedState(
        app=app,
        client=client,
        settings=settings,
        database=database,
        store=store,
        policy=policy,
        release_id=outcomes[0].release_id,
        pending_keys=pending_keys,
        learner_ids=RELEASED_LEARNERS + PENDING_LEARNERS,
    )


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.stdout)
        return loaded

    @property
    def finding_checks(self) -> set[str]:
        return {finding["check"] for finding in self.report["findings"]}


RunAudit = Callable[..., CliResult]
