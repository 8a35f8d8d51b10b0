"""ROC AUC against a pairwise reference, per-course summaries, splits and the plot."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest

from reports_ml.evaluate import (
    cross_validate_by_prompt,
    evaluate_model,
    holdout_metrics,
    leave_one_course_out,
    plot_auc_by_course,
    roc_auc_score,
    summarize,
)
from reports_ml.model import train_model
from reports_ml.models import ReportRecord
from reports_ml.simulate import simulate_reports
from reports_ml.staple import load_staple
from tests.datasets import STAPLE_DIR as STAPLE


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The definition: the chance a random correct report outranks a random wrong one."""
    positives, negatives = scores[labels], scores[~labels]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return float(wins / (len(positives) * len(negatives)))


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_matches_the_pairwise_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(5, 120))
    labels = rng.random(size) < 0.3
    labels[:2] = [True, False]
    # Few distinct values, so ties are common (as with times_reported).
    scores = rng.integers(0, 4, size) + labels * rng.integers(0, 2, size)
    assert roc_auc_score(labels, scores) == pytest.approx(_pairwise_auc(labels, scores))
    floats = rng.random(size)
    assert roc_auc_score(labels, floats) == pytest.approx(_pairwise_auc(labels, floats))


def test_roc_auc_edge_cases() -> None:
    assert math.isnan(roc_auc_score([True, True], [0.1, 0.2]))
    assert roc_auc_score([False, True], [0.1, 0.2]) == 1.0
    assert roc_auc_score([False, True], [0.2, 0.1]) == 0.0
    with pytest.raises(ValueError, match="must be equal"):
        roc_auc_score([True, False], [0.1])


def _record(course: str, prompt_id: str, label: bool, times: int) -> ReportRecord:
    return ReportRecord(
        report_id=f"{course}{prompt_id}{label}{times}",
        course=course,
        prompt_id=prompt_id,
        prompt="x",
        answer=f"answer {times}",
        accepted=("a",),
        times_reported=times,
        label=label,
    )


def test_summarize_counts_reports_per_course() -> None:
    records = [
        _record("en_hu", "p1", True, 3),
        _record("en_hu", "p1", False, 1),
        _record("en_hu", "p2", False, 2),
        _record("en_vi", "p3", True, 1),
        _record("en_vi", "p3", False, 1),
    ]
    counts = np.array([r.times_reported for r in records], dtype=float)
    result = summarize(records, {"count": counts}, "test")
    assert result.overall.n_reports == 5
    assert result.overall.n_correct == 2
    hu, vi = result.courses
    assert (hu.name, hu.n_reports, hu.n_correct, hu.auc["count"]) == ("en_hu", 3, 1, 1.0)
    assert (vi.name, vi.n_reports, vi.auc["count"]) == ("en_vi", 2, 0.5)
    assert result.to_dict()["courses"]["en_vi"]["auc"]["count"] == 0.5
    assert result.wins("count", "count") == []


@functools.cache
def _records() -> tuple[ReportRecord, ...]:
    prompts = {
        "en_pt": load_staple(STAPLE / "excerpt.en_pt.gold.txt")[10:60],
        "en_vi": load_staple(STAPLE / "excerpt.en_vi.gold.txt")[10:60],
    }
    return tuple(simulate_reports(prompts, seed=5))


def test_cross_validation_by_prompt_beats_counting_and_ngrams() -> None:
    result = cross_validate_by_prompt(list(_records()), folds=3)
    assert [c.name for c in result.courses] == ["en_pt", "en_vi"]
    assert set(result.overall.auc) == {"model", "ngram", "count"}
    assert set(result.wins("model", "count")) == {"all", "en_pt", "en_vi"}
    assert "all" in result.wins("model", "ngram")


def test_leave_one_course_out_still_beats_counting() -> None:
    steps: list[int] = []
    result = leave_one_course_out(list(_records()), progress=steps.append)
    assert len(steps) == 4  # two courses, two models each
    assert set(result.wins("model", "count")) == {"all", "en_pt", "en_vi"}


def test_evaluate_model_and_holdout_metrics() -> None:
    records = list(_records())
    evaluation = evaluate_model(train_model(records[::2]), records[1::2])
    assert set(evaluation.overall.auc) == {"model", "count"}
    metrics = holdout_metrics(records, holdout_fraction=0.3)
    assert metrics["holdout_auc"] is not None
    assert metrics["holdout_count_baseline_auc"] is not None
    assert metrics["holdout_auc"] > metrics["holdout_count_baseline_auc"]


def test_plot_is_written(tmp_path: Path) -> None:
    records = list(_records())
    scores = {
        "model": np.array([r.times_reported + bool(r.label) for r in records], dtype=float),
        "ngram": np.zeros(len(records)),
        "count": np.array([r.times_reported for r in records], dtype=float),
    }
    path = plot_auc_by_course([summarize(records, scores, "a split")] * 2, tmp_path / "auc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
