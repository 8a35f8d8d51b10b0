"""Retraining from reviewers' decisions: promotion only without an AUC loss, rescoring, rollback,
and serving that switches models without a restart."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.auth import Role
from core.db import Database
from reports_ml.jobs import Trainer, held_back, promote_version, retrain_reports_model
from reports_ml.model import ReportModel
from reports_ml.models import ReportRecord
from reports_ml.registry import ModelRegistry, SavableModel, ServingModel
from reports_ml.review import answer_key
from reports_ml.simulate import simulate_course
from reports_ml.staple import load_staple
from reports_ml.tables import AcceptedTranslation, CoursePrompt, Report
from tests.datasets import STAPLE_DIR as STAPLE

STAPLE_PT = STAPLE / "excerpt.en_pt.gold.txt"


@functools.cache
def _simulated(prompts: int = 30, seed: int = 7) -> list[ReportRecord]:
    return simulate_course("en_pt", load_staple(STAPLE_PT)[:prompts], seed=seed)


def _store(database: Database, records: Sequence[ReportRecord], *, decided: bool) -> None:
    """Put simulated reports in the review tables, decided by their gold label or left open."""
    with database.session() as session:
        known = set(session.scalars(sa.select(CoursePrompt.prompt_id)))
        for record in records:
            if record.prompt_id not in known:
                known.add(record.prompt_id)
                session.add(CoursePrompt(course=record.course, prompt_id=record.prompt_id,
                                         text=record.prompt))
                session.flush()
                unique = {answer_key(text): text for text in reversed(record.accepted)}
                session.execute(sa.insert(AcceptedTranslation), [
                    {"course": record.course, "prompt_id": record.prompt_id, "position": i,
                     "text": text, "normalized_sha256": key}
                    for i, (key, text) in enumerate(reversed(unique.items()))
                ])
            session.add(Report(
                course=record.course, prompt_id=record.prompt_id, answer=record.answer,
                normalized_sha256=answer_key(record.answer), times_reported=record.times_reported,
                score=0.0, scored_by="setup", decision=record.label if decided else None,
            ))


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
    records = _simulated()
    prompts = {r.prompt_id for r in records if held_back(r.course, r.prompt_id)}
    assert 0 < len(prompts) < len({r.prompt_id for r in records}) / 2
    assert prompts == {r.prompt_id for r in records if held_back("en_pt", r.prompt_id)}


@pytest.mark.parametrize(
    "trainer",
    [_small, pytest.param(None, marks=pytest.mark.slow, id="default-trainer")],
)
def test_first_model_beats_the_count_heuristic_and_is_promoted(
    database: Database, serving: ServingModel, client: TestClient,
    auth: Callable[[Role], dict[str, str]], trainer: Trainer | None,
) -> None:
    records = _simulated()
    _store(database, records[:-30], decided=True)
    _store(database, records[-30:], decided=False)
    assert serving.current().kind == "heuristic"

    trained = {"trainer": trainer} if trainer is not None else {}
    outcome = retrain_reports_model(database, serving, min_new_labels=10, **trained)

    assert outcome.status == "promoted", outcome.reason
    assert outcome.compared_with == "heuristic"
    assert outcome.auc is not None
    assert outcome.compared_auc is not None
    assert outcome.auc > outcome.compared_auc
    assert outcome.rescored == 30
    assert {by for _, by in _open_scores(database).values()} == {outcome.version}
    # The running app serves the new model without a restart.
    queue = client.get("/v1/reports/queue", params={"course": "en_pt", "limit": 5},
                       headers=auth(Role.CONTRIBUTOR)).json()
    assert queue["scorer"] == {"kind": "model", "version": outcome.version,
                               "note": f"ranked by model version {outcome.version}"}
    scores = [item["score"] for item in queue["items"]]
    assert scores == sorted(scores, reverse=True)

    # Too few new labels since then: the next run does nothing.
    again = retrain_reports_model(database, serving, min_new_labels=10)
    assert again.status == "skipped"
    assert "0 new labels" in again.reason


def test_a_model_with_worse_auc_is_not_promoted(
    database: Database, serving: ServingModel,
) -> None:
    records = _simulated()
    _store(database, records[:-30], decided=True)
    _store(database, records[-30:], decided=False)
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
    database: Database, serving: ServingModel,
) -> None:
    records = [r for r in _simulated() if not r.label][:50]
    _store(database, records, decided=True)
    outcome = retrain_reports_model(database, serving, min_new_labels=1, trainer=_small)
    assert outcome.status == "skipped"
    assert "both accepted and rejected" in outcome.reason
    assert serving.registry.versions() == []


def test_serving_swaps_on_promotion_and_survives_a_broken_version(tmp_path: Path) -> None:
    records = _simulated()
    registry = ModelRegistry(tmp_path / "models")
    serving = ServingModel(registry)
    assert serving.current().kind == "heuristic"
    info = {"created": "2026-01-01T00:00:00+00:00", "trained_on": len(records), "held_back": 0}
    model = _small(records, 0)
    one = registry.add(model, info).version
    two = registry.add(model, info).version
    registry.promote(one)
    first = serving.current()
    assert first.version == one
    assert serving.current() is first  # loaded once, reused
    registry.promote(two)
    assert serving.current().version == two
    assert serving.current().score(records[:3]).shape == (3,)
    # A version whose files are damaged is skipped: the previous model keeps serving.
    three = registry.add(model, info).version
    for path in (registry.versions_dir / three).iterdir():
        if path.name != "version.json":
            path.write_bytes(b"damaged")
    registry.promote(three)
    assert serving.current().version == two
    with pytest.raises(Exception, match="no model version"):
        registry.promote("0099")


def test_the_scheduled_job_runs_a_retraining(database: Database, serving: ServingModel) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from reports_ml.jobs import schedule_retraining

    scheduler = BackgroundScheduler(timezone="UTC")
    schedule_retraining(scheduler, database=database, serving=serving, min_new_labels=1)
    job = scheduler.get_job("reports-retrain")
    assert job is not None
    job.func()  # no labels yet: the run skips quietly, nothing is stored
    assert serving.registry.versions() == []
    assert serving.registry.promoted_version() is None


def test_seed_records_join_training_but_never_the_held_back_prompts(
    database: Database, serving: ServingModel,
) -> None:
    records = _simulated()
    _store(database, records, decided=True)
    seed = _simulated(prompts=60, seed=11)[-900:]
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
