"""Two ``chorus serve`` replicas on one PostgreSQL and one SeaweedFS share the review model.

Both replicas schedule retraining every two seconds on their job processes: one run trains and
promotes, every other run finds the lock taken or nothing new to learn. The promoted model is
served by both replicas, an operator's rollback from the CLI reaches both, and a restarted
replica serves the same model from the database and the blob store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from core.auth import Role, create_key
from core.db import Database
from core.storage import open_store
from reports_ml.model import ReportModel
from reports_ml.registry import MODELS_PREFIX, ModelRegistry
from reports_ml.tables import Report
from tests.e2e.deployment import ServerFactory
from tests.e2e.procs import REPO_ROOT, ChorusProcess
from tests.reports_ml.records import simulated, store_reports

pytestmark = pytest.mark.e2e

RETRAIN_INTERVAL_S = 2
POLL_S = 0.5


def _retraining_runs(log_path: Path) -> Counter[str]:
    """Outcomes of a replica's retraining runs, from its JSON log lines."""
    runs: Counter[str] = Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"retraining run"' in line:
            runs[json.loads(line)["status"]] += 1
    return runs


def _served_version(server: ChorusProcess, key: str) -> str:
    answer = httpx.get(
        f"{server.url}/v1/reports/queue",
        params={"course": "en_pt"},
        headers={"X-API-Key": key},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    version: str = answer.json()["scorer"]["version"]
    return version


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        time.sleep(0.25)


def _open_scored_by(database: Database) -> set[str]:
    with database.session() as session:
        return set(session.scalars(sa.select(Report.scored_by).where(Report.decision.is_(None))))


def test_two_replicas_share_the_promoted_model_and_retrain_once(
    chorus_server: ServerFactory,
    fresh_postgres_url: str,
    e2e_database: Database,
    s3_store_url: str,
) -> None:
    database = e2e_database
    records = simulated(prompts=40)
    decided_prompts = {r.prompt_id for r in simulated(prompts=30)}
    store_reports(database, [r for r in records if r.prompt_id in decided_prompts], decided=True)
    store_reports(
        database, [r for r in records if r.prompt_id not in decided_prompts], decided=False
    )
    with database.session() as session:
        key = create_key(session, role=Role.CONTRIBUTOR, name="e2e reviewer")
    registry = ModelRegistry(database, open_store(s3_store_url))

    def replica(scheduler: bool) -> ChorusProcess:
        return chorus_server(
            database_url=fresh_postgres_url,
            storage_url=s3_store_url,
            scheduler_enabled=str(scheduler).lower(),
            release_interval="3600",
            retrain_interval=str(RETRAIN_INTERVAL_S),
            model_poll_s=str(POLL_S),
            log_level="INFO",
        )

    replicas = [replica(scheduler=True) for _ in range(2)]
    for server in replicas:
        server.launch()
    for server in replicas:
        server.wait_ready()
    assert {_served_version(server, key) for server in replicas} == {"heuristic"}

    # One retraining run trains and promotes ...
    _wait_for(lambda: registry.promoted_version() is not None, 180, "a model was promoted")
    promoted = registry.promoted_version()
    assert promoted is not None
    # ... and every other run, on either replica, finds it under way or nothing new to learn.
    try:
        _wait_for(
            # Each replica ran again and did not train: nothing new to learn, or the other
            # replica's run held the lock (their two-second schedules may stay in step).
            lambda: all(
                (runs := _retraining_runs(s.log_path))["skipped"] + runs["busy"] >= 2
                for s in replicas
            ),
            180,
            "both replicas ran their retraining job again",
        )
    except AssertionError as exc:
        runs = [_retraining_runs(server.log_path) for server in replicas]
        raise AssertionError(f"{exc}; runs per replica: {runs}") from None
    runs = [_retraining_runs(server.log_path) for server in replicas]
    print("retraining runs per replica:", runs)
    assert sum(r["promoted"] + r["kept_current"] for r in runs) == 1, runs
    assert set().union(*runs) <= {"promoted", "skipped", "busy"}, runs
    assert [v.version for v in registry.versions()] == [promoted]
    assert {k.rsplit("/", 1)[1] for k in registry.store.list(MODELS_PREFIX)} == {
        "model.joblib",
        "model.json",
    }
    # Rescoring ran once, with the promoted model; both replicas serve it.
    assert _open_scored_by(database) == {promoted}
    _wait_for(
        lambda: {_served_version(s, key) for s in replicas} == {promoted},
        10,
        "both replicas served the promoted model",
    )

    # An operator stores a second version and promotes it from the CLI: both replicas follow.
    second = registry.add(
        ReportModel(hash_bits=12).fit(records),
        {"created": "2026-01-01T00:00:00+00:00", "trained_on": len(records), "held_back": 0},
    ).version
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHORUS_")}
    promote = subprocess.run(
        [sys.executable, "-m", "chorus", "reports", "models", "promote", second],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **{k: v for k, v in replicas[0].env.items() if k.startswith("CHORUS_")}},
    )
    assert promote.returncode == 0, promote.stderr
    _wait_for(
        lambda: {_served_version(s, key) for s in replicas} == {second},
        10,
        "both replicas served the version promoted from the CLI",
    )
    assert _open_scored_by(database) == {second}

    # A restart loses nothing: fresh processes serve the promoted version from PostgreSQL + S3.
    for server in replicas:
        server.stop()
    restarted = replica(scheduler=False).start()
    assert _served_version(restarted, key) == second
    assert registry.promoted_version() == second
