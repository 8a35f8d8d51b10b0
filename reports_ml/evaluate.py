"""How well rankings of reports find the correct ones: ROC AUC overall and per course.

Three rankings are compared: the full model (``model``), the article's logistic regression over
hashed word n-grams (``ngram``, the baseline row) and the count baseline (``count``: most
reported first). Splits never put a prompt
in both training and test data: ``cross_validate_by_prompt`` (k folds of prompts) and
``leave_one_course_out`` (a course the model never saw).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics

from core.errors import InvalidInput
from reports_ml.features import FeatureSet
from reports_ml.model import ReportModel, split_by_prompt
from reports_ml.models import ReportRecord

__all__ = [
    "METHOD_LABELS",
    "Evaluation",
    "GroupResult",
    "count_baseline_scores",
    "cross_validate_by_prompt",
    "evaluate_model",
    "holdout_metrics",
    "leave_one_course_out",
    "plot_auc_by_course",
    "roc_auc_score",
    "summarize",
]

Progress = Callable[[int], None]
METHOD_LABELS = {"model": "model", "ngram": "n-gram regression", "count": "count baseline"}
"""How each ranking method is named in tables and plots."""


def roc_auc_score(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (higher is better; ties count half); NaN when the labels hold
    only one class."""
    truth = np.asarray(labels, dtype=bool)
    values = np.asarray(scores, dtype=float)
    if truth.ndim != 1 or truth.shape != values.shape:
        raise ValueError(f"labels {truth.shape} and scores {values.shape} must be equal 1-d")
    if truth.all() or not truth.any():
        return math.nan
    return float(metrics.roc_auc_score(truth, values))


def count_baseline_scores(records: Sequence[ReportRecord]) -> np.ndarray:
    """The ranking contributors had before the model: by ``times_reported``."""
    return np.array([record.times_reported for record in records], dtype=float)


@dataclass(frozen=True)
class GroupResult:
    """AUC per ranking method for one course (or ``all``), with its report counts."""

    name: str
    n_reports: int
    n_correct: int
    auc: dict[str, float]


@dataclass(frozen=True)
class Evaluation:
    split: str
    overall: GroupResult
    courses: list[GroupResult]

    def to_dict(self) -> dict[str, Any]:
        def group(result: GroupResult) -> dict[str, Any]:
            return {
                "n_reports": result.n_reports,
                "n_correct": result.n_correct,
                "auc": {k: None if math.isnan(v) else round(v, 4) for k, v in result.auc.items()},
            }

        return {
            "split": self.split,
            "overall": group(self.overall),
            "courses": {result.name: group(result) for result in self.courses},
        }

    def wins(self, method: str, over: str) -> list[str]:
        """Courses (and ``all``) on which ``method`` ranks strictly better than ``over``."""
        return [
            result.name
            for result in [self.overall, *self.courses]
            if result.auc[method] > result.auc[over]
        ]


def summarize(
    records: Sequence[ReportRecord],
    scores: dict[str, np.ndarray],
    split: str,
) -> Evaluation:
    """Per-course and pooled AUC of each ranking in ``scores`` over labelled ``records``."""
    labels = np.array([bool(record.label) for record in records])
    courses = np.array([record.course for record in records])

    def result(name: str, mask: np.ndarray) -> GroupResult:
        return GroupResult(
            name=name,
            n_reports=int(mask.sum()),
            n_correct=int(labels[mask].sum()),
            auc={
                method: roc_auc_score(labels[mask], values[mask])
                for method, values in scores.items()
            },
        )

    return Evaluation(
        split=split,
        overall=result("all", np.ones(len(records), dtype=bool)),
        courses=[result(course, courses == course) for course in sorted(set(courses.tolist()))],
    )


def _labelled(records: Sequence[ReportRecord]) -> list[ReportRecord]:
    labelled = [record for record in records if record.label is not None]
    if not labelled:
        raise InvalidInput("no labelled reports to evaluate on (every label is null)")
    return labelled


def evaluate_model(
    model: ReportModel,
    records: Sequence[ReportRecord],
    *,
    n_jobs: int = 1,
    progress: Progress | None = None,
) -> Evaluation:
    """A trained model against the count baseline on (held-out) labelled records."""
    labelled = _labelled(records)
    scores = {
        "model": model.score(labelled, n_jobs=n_jobs, progress=progress),
        "count": count_baseline_scores(labelled),
    }
    return summarize(labelled, scores, "held-out data")


def _out_of_fold_scores(
    records: list[ReportRecord],
    folds: list[np.ndarray],
    feature_sets: Sequence[FeatureSet],
    random_state: int,
    n_jobs: int,
    progress: Progress | None,
) -> dict[str, np.ndarray]:
    scores = {feature_set: np.full(len(records), np.nan) for feature_set in feature_sets}
    everything = np.arange(len(records))
    for test in folds:
        train = np.setdiff1d(everything, test)
        for feature_set in feature_sets:
            model = ReportModel(feature_set, random_state=random_state)
            model.fit([records[i] for i in train], n_jobs=n_jobs)
            scores[feature_set][test] = model.score([records[i] for i in test], n_jobs=n_jobs)
            if progress is not None:
                progress(1)
    named = {"model" if fs == "full" else fs: values for fs, values in scores.items()}
    return {**named, "count": count_baseline_scores(records)}


def cross_validate_by_prompt(
    records: Sequence[ReportRecord],
    *,
    folds: int = 5,
    random_state: int = 0,
    feature_sets: Sequence[FeatureSet] = ("full", "ngram"),
    n_jobs: int = 1,
    progress: Progress | None = None,
) -> Evaluation:
    """Out-of-fold AUC with prompts dealt into ``folds`` folds (``progress(1)`` after each of
    the ``folds × len(feature_sets)`` models)."""
    labelled = _labelled(records)
    prompts = sorted({(record.course, record.prompt_id) for record in labelled})
    if len(prompts) < folds or folds < 2:
        raise InvalidInput(f"need at least 2 folds and as many prompts ({len(prompts)})")
    order = np.random.default_rng(random_state).permutation(len(prompts))
    fold_of = {prompts[p]: k % folds for k, p in enumerate(order.tolist())}
    assignment = np.array([fold_of[(record.course, record.prompt_id)] for record in labelled])
    test_sets = [np.flatnonzero(assignment == k) for k in range(folds)]
    scores = _out_of_fold_scores(labelled, test_sets, feature_sets, random_state, n_jobs, progress)
    return summarize(labelled, scores, f"by prompt, {folds} folds")


def leave_one_course_out(
    records: Sequence[ReportRecord],
    *,
    random_state: int = 0,
    feature_sets: Sequence[FeatureSet] = ("full", "ngram"),
    n_jobs: int = 1,
    progress: Progress | None = None,
    group_of: Callable[[str], str] | None = None,
) -> Evaluation:
    """AUC on each course of models trained on the other courses only; with ``group_of``
    (course name to group), on the courses of models trained without the course's whole
    group (e.g. a language in every script it is written in)."""
    labelled = _labelled(records)
    group = group_of or (lambda course: course)
    groups = np.array([group(record.course) for record in labelled])
    names = sorted(set(groups.tolist()))
    if len(names) < 2:
        raise InvalidInput("leave-one-course-out needs reports of at least two courses")
    test_sets = [np.flatnonzero(groups == name) for name in names]
    scores = _out_of_fold_scores(labelled, test_sets, feature_sets, random_state, n_jobs, progress)
    split = "leave one course out" if group_of is None else "leave one course group out"
    return summarize(labelled, scores, split)


def holdout_metrics(
    records: Sequence[ReportRecord],
    *,
    holdout_fraction: float = 0.2,
    random_state: int = 0,
    n_jobs: int = 1,
) -> dict[str, float | None]:
    """AUC on held-out prompts of a model fit on the rest, and of the count baseline (for a
    model card)."""
    labelled = _labelled(records)
    train, test = split_by_prompt(labelled, holdout_fraction, random_state=random_state)
    if not train or not test:
        raise InvalidInput("too few prompts to hold some out")
    model = ReportModel(random_state=random_state).fit([labelled[i] for i in train], n_jobs=n_jobs)
    evaluation = evaluate_model(model, [labelled[i] for i in test], n_jobs=n_jobs)
    auc = evaluation.overall.auc
    return {
        "holdout_fraction": holdout_fraction,
        "holdout_reports": float(evaluation.overall.n_reports),
        "holdout_auc": None if math.isnan(auc["model"]) else round(auc["model"], 4),
        "holdout_count_baseline_auc": None if math.isnan(auc["count"]) else round(auc["count"], 4),
    }


def plot_auc_by_course(evaluations: Sequence[Evaluation], path: Path | str) -> Path:
    """Scatter of reports per course (x, log) against AUC (y) per method, one panel per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    markers = {"model": ("o", "tab:blue"), "ngram": ("^", "tab:orange"), "count": ("s", "tab:gray")}
    figure, axes = plt.subplots(
        1,
        len(evaluations),
        figsize=(6.2 * len(evaluations), 5.0),
        squeeze=False,
        sharey=True,
    )
    for axis, evaluation in zip(axes[0], evaluations, strict=True):
        for method, (marker, colour) in markers.items():
            points = [
                (r.n_reports, r.auc[method], r.name)
                for r in evaluation.courses
                if method in r.auc and not math.isnan(r.auc[method])
            ]
            if not points:
                continue
            axis.scatter(
                [p[0] for p in points],
                [p[1] for p in points],
                marker=marker,
                s=70,
                color=colour,
                label=METHOD_LABELS[method],
                zorder=3,
            )
            if method == "model":
                for x, y, name in points:
                    axis.annotate(
                        name,
                        (x, y),
                        textcoords="offset points",
                        xytext=(0, 9),
                        ha="center",
                        fontsize=10,
                    )
        axis.axhline(0.5, color="black", linewidth=0.8, linestyle=":", label="random ranking")
        axis.set_xscale("log")
        axis.margins(x=0.2)
        # Ticks at the courses' sizes: a few courses rarely span a decade of the log scale.
        axis.set_xticks(sorted({r.n_reports for r in evaluation.courses}))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("reports in course (log scale)")
        axis.set_title(evaluation.split)
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("ROC AUC")
    axes[0][0].set_ylim(0.4, 1.0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    figure.suptitle("Report ranking quality per course")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    target = Path(path)
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target
