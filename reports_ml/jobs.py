"""Retraining: learn from reviewers' decisions, promote only a model that ranks no worse.

One run (scheduled, or ``chorus reports retrain``):

1. count decided reports; stop unless ``min_new_labels`` arrived since the last run;
2. hold back about a fifth of the prompts (chosen by a hash of course and prompt id, so the
   slice is stable and no prompt is in both parts) and train on the rest, plus optional
   simulated seed records;
3. score the held-back slice with the new model and with the serving one (the count heuristic
   if none is promoted yet); ROC AUC of both;
4. keep the new version in the registry either way; promote it only if its AUC is not lower;
   then score every open report again with it. Every replica picks the promotion up within its
   ``model_poll_s``.

A run holds the ``chorus-reports-retrain`` database lock (``Database.try_lock``): a run that
finds it taken ends at once as ``busy``, so one run trains however many replicas schedule it,
and the label count it records in the shared registry row stops the others until new labels
arrive. ``chorus serve`` schedules it on the job process (``core.scheduler.PROCESS_EXECUTOR``),
never on the API process's threads: training and rescoring take many seconds of CPU.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from apscheduler.schedulers.base import BaseScheduler

from core.db import Database
from core.logs import configure_logging
from core.scheduler import PROCESS_EXECUTOR, interval_trigger
from core.storage import open_store
from reports_ml.models import ReportRecord
from reports_ml.registry import ModelRegistry, SavableModel, ServingModel
from reports_ml.review_records import labelled_records, rescore_open
from reports_ml.scoring import ModelScorer, Scorer

__all__ = [
    "MIN_NEW_LABELS",
    "RETRAIN_INTERVAL",
    "RETRAIN_JOB_ID",
    "RETRAIN_LOCK",
    "RetrainOutcome",
    "Trainer",
    "held_back",
    "promote_version",
    "retrain_reports_model",
    "schedule_retraining",
]

_logger = logging.getLogger("chorus.reports.jobs")
MIN_NEW_LABELS = 50
RETRAIN_INTERVAL = "hourly"
RETRAIN_JOB_ID = "reports-retrain"
RETRAIN_LOCK = "chorus-reports-retrain"
HELD_BACK_SHARE = 5  # one prompt in five

Trainer = Callable[[Sequence[ReportRecord], int], SavableModel]


@dataclass(frozen=True)
class RetrainOutcome:
    status: Literal["busy", "skipped", "kept_current", "promoted"]
    reason: str
    labels: int
    version: str | None = None
    auc: float | None = None
    compared_with: str | None = None
    compared_auc: float | None = None
    rescored: int = 0


def held_back(course: str, prompt_id: str) -> bool:
    """Whether a prompt belongs to the evaluation slice (stable across runs)."""
    digest = hashlib.sha256(f"{course}\x1f{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % HELD_BACK_SHARE == 0


def _train_model(records: Sequence[ReportRecord], random_state: int) -> SavableModel:
    from reports_ml.model import train_model

    model: SavableModel = train_model(records, random_state=random_state, label_source="reviewers")
    return model


def _auc(scorer: Scorer, records: Sequence[ReportRecord]) -> float:
    from reports_ml.evaluate import roc_auc_score

    labels = np.array([bool(r.label) for r in records])
    return float(roc_auc_score(labels, scorer.score(records)))


def retrain_reports_model(
    database: Database,
    serving: ServingModel,
    *,
    min_new_labels: int = MIN_NEW_LABELS,
    seed_records: Sequence[ReportRecord] = (),
    random_state: int = 0,
    trainer: Trainer = _train_model,
) -> RetrainOutcome:
    """One retraining run (see module docstring); ``trainer`` is injectable for tests."""
    with database.try_lock(RETRAIN_LOCK) as acquired:
        if not acquired:
            return RetrainOutcome("busy", "another retraining run is under way", 0)
        # What another replica promoted since this process last looked is the one to beat.
        serving.refresh()
        return _retrain(
            database,
            serving,
            min_new_labels=min_new_labels,
            seed_records=seed_records,
            random_state=random_state,
            trainer=trainer,
        )


def _retrain(
    database: Database,
    serving: ServingModel,
    *,
    min_new_labels: int,
    seed_records: Sequence[ReportRecord],
    random_state: int,
    trainer: Trainer,
) -> RetrainOutcome:
    registry = serving.registry
    with database.session() as session:
        records = labelled_records(session)
    labels = len(records)
    new = labels - registry.labels_at_last_training()
    if new < min_new_labels:
        return RetrainOutcome(
            "skipped", f"{new} new labels since the last training, {min_new_labels} needed", labels
        )
    evaluation = [r for r in records if held_back(r.course, r.prompt_id)]
    training = [r for r in records if not held_back(r.course, r.prompt_id)]
    # Seed records of held-back prompts would leak into the evaluation: leave them out.
    training += [
        r for r in seed_records if r.label is not None and not held_back(r.course, r.prompt_id)
    ]
    for part, name in ((evaluation, "held-back"), (training, "training")):
        if len({r.label for r in part}) < 2:
            return RetrainOutcome(
                "skipped", f"the {name} part needs both accepted and rejected reports", labels
            )
    candidate = trainer(training, random_state)
    current = serving.current()
    auc = _auc(ModelScorer(version="candidate", model=candidate), evaluation)
    compared_auc = _auc(current, evaluation)
    promote = auc >= compared_auc
    version = registry.add(
        candidate,
        {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "trained_on": len(training),
            "held_back": len(evaluation),
            "auc": auc,
            "compared_with": current.version,
            "compared_auc": compared_auc,
            "promoted_on_training": promote,
        },
    ).version
    registry.record_training(labels)
    if not promote:
        _logger.info("new model not promoted", extra={"version": version, "auc": auc})
        return RetrainOutcome(
            "kept_current",
            f"AUC {auc:.4f} is below the serving {current.version}'s {compared_auc:.4f}",
            labels,
            version,
            auc,
            current.version,
            compared_auc,
        )
    registry.promote(version)
    serving.refresh()
    with database.session(write=True) as session:
        rescored = rescore_open(session, ModelScorer(version=version, model=candidate))
    _logger.info("new model promoted", extra={"version": version, "auc": auc})
    return RetrainOutcome(
        "promoted",
        f"AUC {auc:.4f} is not below the serving {current.version}'s {compared_auc:.4f}",
        labels,
        version,
        auc,
        current.version,
        compared_auc,
        rescored,
    )


def promote_version(database: Database, serving: ServingModel, version: str) -> int:
    """Promote a stored version (e.g. a rollback) and score the open reports with it."""
    registry = serving.registry
    model = registry.load(version)
    registry.promote(version)
    serving.refresh()
    with database.session(write=True) as session:
        return rescore_open(session, ModelScorer(version=version, model=model))


@functools.cache
def _job_serving(database_url: str, storage_url: str, poll_s: float) -> ServingModel:
    """The job process's registry and loaded model, kept for its next run."""
    registry = ModelRegistry(Database(database_url), open_store(storage_url))
    return ServingModel(registry, poll_s=poll_s)


@functools.cache
def _configure_job_logging(log_level: str) -> None:
    configure_logging(log_level)


def run_retraining_job(
    database_url: str, storage_url: str, min_new_labels: int, log_level: str = "INFO"
) -> RetrainOutcome | None:
    """One scheduled run, in the scheduler's job process; logs its outcome, never raises."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        _configure_job_logging(log_level)
    try:
        serving = _job_serving(database_url, storage_url, 0.0)
        outcome = retrain_reports_model(
            serving.registry.database, serving, min_new_labels=min_new_labels
        )
    except Exception as exc:  # the scheduler must keep running
        _logger.error("retraining failed", extra={"error": type(exc).__name__})
        return None
    _logger.info(
        "retraining run",
        extra={"status": outcome.status, "labels": outcome.labels, "version": outcome.version},
    )
    return outcome


def schedule_retraining(
    scheduler: BaseScheduler,
    *,
    database_url: str,
    storage_url: str,
    interval: str = RETRAIN_INTERVAL,
    min_new_labels: int = MIN_NEW_LABELS,
    log_level: str = "INFO",
) -> None:
    """Add the retraining run to ``scheduler``, on its job process (never the API's threads)."""
    scheduler.add_job(
        run_retraining_job,
        trigger=interval_trigger(interval),
        args=(database_url, storage_url, min_new_labels, log_level),
        id=RETRAIN_JOB_ID,
        name="reports retraining",
        replace_existing=True,
        executor=PROCESS_EXECUTOR,
    )
