"""Retraining from reviewers' decisions: promotion only without an AUC loss, rescoring, rollback,
and serving that switches models without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.auth import Role
from core.db import Database
from core.storage import open_store
from reports_ml.jobs import (
    RETRAIN_LOCK,
    Trainer,
    held_back,
    promote_version,
    retrain_reports_model,
)
from reports_ml.model import ReportModel
from reports_ml.models import ReportRecord
from reports_ml.registry import MODELS_PREFIX, ModelRegistry, SavableModel, ServingModel
from reports_ml.scoring import ModelScorer
from reports_ml.tables import ModelVersion, Report
from tests.reports_ml.records import simulated, store_reports


def _small(records: Sequence[ReportRecord], random_state: int) -> SavableModel:
    """The real model with a small hashing space, so these tests train in about a second."""
    return ReportModel(hash_bits=12, random_state=random_state).fit(records)


def _flipped(records: Sequence[ReportRecord], random_state: int) -> SavableModel:
    """A trainer that learns from inverted labels: a model that ranks worse."""
    return _small([r.model_copy(update={"label": not r.label}) for r in records], random_state)


@pytest.fixture
def database(client: TestClient, app: FastAPI) -> Database:
    db: Database = app.state.database
    return db


@pytest.fixture
def serving(app: FastAPI) -> ServingModel:
    holder: ServingModel = app.state.serving_model
    return holder


def _open_scores(database: Database) -> dict[str, tuple[float, str]]:
    with database.session() as session:
        rows = session.execute(
            sa.select(Report.id, Report.score, Report.scored_by).where(Report.decision.is_(None))
        ).all()
    return {report_id: (score, by) for report_id, score, by in rows}


def test_the_evaluation_slice_is_by_prompt_and_stable() -> None:
    records = simulated()
    prompts = {r.prompt_id for r in records if held_back(r.course, r.prompt_id)}
    assert 0 < len(prompts) < len({r.prompt_id for r in records}) / 2
    assert prompts == {r.prompt_id for r in records if held_back("en_pt", r.prompt_id)}


@pytest.mark.parametrize(
    "trainer",
    [_small, pytest.param(None, marks=pytest.mark.slow, id="default-trainer")],
)
def test_first_model_beats_the_count_heuristic_and_is_promoted(
    database: Database,
    serving: ServingModel,
    client: TestClient,
    auth: Callable[[Role], dict[str, str]],
    trainer: Trainer | None,
) -> None:
    records = simulated()
    store_reports(database, records[:-30], decided=True)
    store_reports(database, records[-30:], decided=False)
    assert serving.current().kind == "heuristic"

    if trainer is None:
        outcome = retrain_reports_model(database, serving, min_new_labels=10)
    else:
        outcome = retrain_reports_model(database, serving, min_new_labels=10, trainer=trainer)

    assert outcome.status == "promoted", outcome.reason
    assert outcome.compared_with == "heuristic"
    assert outcome.auc is not None
    assert outcome.compared_auc is not None
    assert outcome.auc > outcome.compared_auc
    assert outcome.rescored == 30
    assert {by for _, by in _open_scores(database).values()} == {outcome.version}
    # The running app serves the new model without a restart.
    queue = client.get(
        "/v1/reports/queue", params={"course": "en_pt", "limit": 5}, headers=auth(Role.CONTRIBUTOR)
    ).json()
    assert queue["scorer"] == {
        "kind": "model",
        "version": outcome.version,
        "note": f"ranked by model version {outcome.version}",
    }
    scores = [item["score"] for item in queue["items"]]
    assert scores == sorted(scores, reverse=True)

    # Too few new labels since then: the next run does nothing.
    again = retrain_reports_model(database, serving, min_new_labels=10)
    assert again.status == "skipped"
    assert "0 new labels" in again.reason


def test_a_model_with_worse_auc_is_not_promoted(
    database: Database,
    serving: ServingModel,
) -> None:
    records = simulated()
    store_reports(database, records[:-30], decided=True)
    store_reports(database, records[-30:], decided=False)
    first = retrain_reports_model(database, serving, min_new_labels=1, trainer=_small)
    assert first.status == "promoted"
    before = _open_scores(database)

    registry = serving.registry
    registry.record_training(0)  # pretend the labels are new, so the run trains again
    worse = retrain_reports_model(database, serving, min_new_labels=1, trainer=_flipped)

    assert worse.status == "kept_current", worse.reason
    assert worse.auc is not None
    assert worse.compared_auc is not None
    assert worse.auc < worse.compared_auc
    assert worse.compared_with == first.version
    assert registry.promoted_version() == first.version
    assert serving.current().version == first.version
    assert _open_scores(database) == before  # nothing rescored
    listed = {v.version: v for v in registry.versions()}
    assert set(listed) == {first.version, worse.version}  # the rejected version is kept
    assert worse.version is not None
    assert not listed[worse.version].promoted_on_training

    # An operator may still promote it (and roll back): serving and scores follow.
    assert promote_version(database, serving, worse.version) == 30
    assert serving.current().version == worse.version
    assert {by for _, by in _open_scores(database).values()} == {worse.version}
    assert first.version is not None
    promote_version(database, serving, first.version)
    assert serving.current().version == first.version
    assert {by for _, by in _open_scores(database).values()} == {first.version}


def test_retraining_needs_both_kinds_of_labels(
    database: Database,
    serving: ServingModel,
) -> None:
    records = [r for r in simulated() if not r.label][:50]
    store_reports(database, records, decided=True)
    outcome = retrain_reports_model(database, serving, min_new_labels=1, trainer=_small)
    assert outcome.status == "skipped"
    assert "both accepted and rejected" in outcome.reason
    assert serving.registry.versions() == []


def _registry(app: FastAPI) -> ModelRegistry:
    """A registry on the app's database and blob store, as another replica would open it."""
    return ModelRegistry(app.state.database, app.state.store)


def test_serving_swaps_on_promotion_and_survives_a_broken_version(
    client: TestClient, app: FastAPI
) -> None:
    records = simulated()
    registry = _registry(app)
    serving = ServingModel(registry, poll_s=0)
    assert serving.current().kind == "heuristic"
    info = {"created": "2026-01-01T00:00:00+00:00", "trained_on": len(records), "held_back": 0}
    model = _small(records, 0)
    one = registry.add(model, info).version
    two = registry.add(model, info).version
    assert (one, two) == ("0001", "0002")
    registry.promote(one)
    first = serving.current()
    assert first.version == one
    assert serving.current() is first  # loaded once, reused
    registry.promote(two)
    assert serving.current().version == two
    assert serving.current().score(records[:3]).shape == (3,)
    # A version whose files are damaged is skipped: the previous model keeps serving.
    three = registry.add(model, info).version
    with app.state.database.session() as session:
        prefix = session.get(ModelVersion, three).object_prefix
    store = app.state.store
    for key in list(store.list(prefix)):
        store.put(key, b"damaged")
    registry.promote(three)
    assert serving.current().version == two
    with pytest.raises(Exception, match="no model version"):
        registry.promote("0099")


def test_models_live_in_the_database_and_blob_store_and_survive_a_restart(
    client: TestClient, app: FastAPI
) -> None:
    records = simulated()
    info = {"created": "2026-01-01T00:00:00+00:00", "trained_on": len(records), "held_back": 0}
    version = _registry(app).add(_small(records, 0), info).version
    _registry(app).promote(version)
    keys = list(app.state.store.list(MODELS_PREFIX))
    assert {key.rsplit("/", 1)[1] for key in keys} == {"model.joblib", "model.json"}
    # A fresh process: new engine, new store client, nothing in memory.
    database = Database(app.state.database.url)
    try:
        store = open_store(app.state.settings.storage_url)
        restarted = ServingModel(ModelRegistry(database, store))
        scorer = restarted.current()
        assert (scorer.kind, scorer.version) == ("model", version)
        expected = ModelScorer(version=version, model=_registry(app).load(version))
        assert np.allclose(scorer.score(records[:5]), expected.score(records[:5]))
        assert [v.version for v in restarted.registry.versions()] == [version]
    finally:
        database.dispose()


def test_concurrent_writers_take_distinct_version_numbers(client: TestClient, app: FastAPI) -> None:
    from concurrent.futures import ThreadPoolExecutor

    records = simulated()
    model = _small(records, 0)
    info = {"created": "2026-01-01T00:00:00+00:00", "trained_on": len(records), "held_back": 0}
    # Each writer its own registry, as replicas have.
    registries = [_registry(app) for _ in range(6)]
    with ThreadPoolExecutor(len(registries)) as pool:
        versions = list(pool.map(lambda r: r.add(model, info).version, registries))
    assert sorted(versions) == [f"{n:04d}" for n in range(1, 7)]
    stored = registries[0].versions()
    assert [v.version for v in stored] == sorted(versions)
    prefixes = {key.rsplit("/", 2)[1] for key in app.state.store.list(MODELS_PREFIX)}
    assert len(prefixes) == 6  # no writer overwrote another's files


def test_a_promotion_elsewhere_is_served_once_the_poll_interval_passes(
    client: TestClient, app: FastAPI
) -> None:
    records = simulated()
    info = {"created": "2026-01-01T00:00:00+00:00", "trained_on": len(records), "held_back": 0}
    other_replica = _registry(app)
    version = other_replica.add(_small(records, 0), info).version
    serving = ServingModel(_registry(app), poll_s=0.3)
    assert serving.current().kind == "heuristic"
    other_replica.promote(version)
    # Within the interval the replica keeps what it read (no database query per request) ...
    assert serving.current().kind == "heuristic"
    time.sleep(0.35)
    # ... and after it, serves the promoted version.
    assert serving.current().version == version


def test_a_retraining_run_that_finds_another_under_way_does_nothing(
    database: Database, serving: ServingModel
) -> None:
    store_reports(database, simulated(), decided=True)
    with database.try_lock(RETRAIN_LOCK) as acquired:
        assert acquired
        outcome = retrain_reports_model(database, serving, min_new_labels=1, trainer=_small)
    assert outcome.status == "busy"
    assert serving.registry.versions() == []
    after = retrain_reports_model(database, serving, min_new_labels=1, trainer=_small)
    assert after.status == "promoted"
    # The label count is shared: a run on another replica finds nothing new to learn from.
    again = retrain_reports_model(database, serving, min_new_labels=1, trainer=_small)
    assert again.status == "skipped"
    assert [v.version for v in serving.registry.versions()] == [after.version]


def test_the_scheduled_job_runs_a_retraining_on_the_job_process(
    database: Database, serving: ServingModel, app: FastAPI
) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from core.scheduler import PROCESS_EXECUTOR
    from reports_ml.jobs import RETRAIN_JOB_ID, schedule_retraining

    scheduler = BackgroundScheduler(timezone="UTC")
    schedule_retraining(
        scheduler,
        database_url=database.url,
        storage_url=app.state.settings.storage_url,
        min_new_labels=1,
    )
    job = scheduler.get_job(RETRAIN_JOB_ID)
    assert job is not None
    assert job.executor == PROCESS_EXECUTOR  # never on the API process's threads
    outcome = job.func(*job.args)  # no labels yet: the run skips quietly, nothing is stored
    assert outcome is not None
    assert outcome.status == "skipped"
    assert serving.registry.versions() == []
    assert serving.registry.promoted_version() is None


def test_seed_records_join_training_but_never_the_held_back_prompts(
    database: Database,
    serving: ServingModel,
) -> None:
    records = simulated()
    store_reports(database, records, decided=True)
    seed = simulated(prompts=60, seed=11)[-900:]
    seen: list[ReportRecord] = []

    def recording(training: Sequence[ReportRecord], random_state: int) -> SavableModel:
        seen.extend(training)
        return _small(training, random_state)

    outcome = retrain_reports_model(
        database, serving, min_new_labels=1, seed_records=seed, trainer=recording
    )
    assert outcome.status in {"promoted", "kept_current"}, outcome.reason
    seed_ids = {r.report_id for r in seed}
    used = [r for r in seen if r.report_id in seed_ids]
    assert used, "seed records were not used"
    assert not any(held_back(r.course, r.prompt_id) for r in seen)
    assert len(used) == sum(not held_back(r.course, r.prompt_id) for r in seed)
