"""The report scorer: gradient-boosted trees over ``features``, trained on all courses together.

``ReportModel.save(path)`` writes the model with joblib at ``path`` and its card (``ModelCard``)
as JSON beside it (``path`` with suffix ``.json``). ``ReportModel.load`` refuses a file of another
``FORMAT_VERSION`` or feature set with a clear ``InvalidInput``. Model files are pickles: load
only files this service wrote.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import platform
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from scipy import sparse
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from core.errors import InvalidInput
from reports_ml.features import DENSE_FEATURES, FeatureExtractor, Features, FeatureSet
from reports_ml.models import LabelSource, ModelCard, ReportLike, ReportRecord
from reports_ml.trees import FlatTrees

__all__ = [
    "FORMAT_VERSION",
    "ReportModel",
    "card_path",
    "split_by_prompt",
    "train_model",
    "training_data_sha256",
]

FORMAT_VERSION = 3
_KIND = "chorus-report-scorer"
# The trees learn from at most this many reports (drawn at random), and only those get features:
# more add little to ranking quality and cost training time linearly (trained on 300,000 of
# 500,000 simulated reports, held-out AUC 0.957 and 17.5 s of fitting; on 150,000, 0.956 and
# 8.4 s; on 100,000, 0.954).
_MAX_TREE_ROWS = 150_000
# Batches up to this size are scored by ``FlatTrees`` (all trees at once, in NumPy); larger
# ones by scikit-learn's compiled loop over trees.
_FLAT_ROWS = 64
# Larger batches are walked through the trees in blocks of this many rows (4 MB of features as
# the trees read them, which stay in the CPU cache): 8.2 us a report instead of 16 for one walk
# over 100,000 rows.
_TREE_BLOCK_ROWS = 8192


@dataclass(frozen=True)
class LinearScorer:
    """The coefficients of a fitted logistic regression over hashed features."""

    coef: np.ndarray
    intercept: float

    def logits(self, hashed: sparse.csr_matrix) -> np.ndarray:
        return np.asarray(hashed @ self.coef + self.intercept, dtype=float)


@functools.cache
def _openmp() -> ThreadpoolController:
    # Built once (it inspects the loaded libraries, ~20 ms); limiting through it is cheap.
    return ThreadpoolController()


def _prompt_halves(records: Sequence[ReportLike], seed: int) -> np.ndarray:
    """A mask putting about half of the prompts (all their reports) on one side."""
    rng = np.random.default_rng(seed)
    side: dict[tuple[str, str], bool] = {}
    return np.array(
        [side.setdefault((r.course, r.prompt_id), bool(rng.random() < 0.5)) for r in records],
        dtype=bool,
    )


def _tree_rows(n_records: int, limit: int, seed: int) -> np.ndarray:
    """Positions of the records the trees learn from: all, or ``limit`` drawn at random."""
    if n_records <= limit:
        return np.arange(n_records)
    return np.sort(np.random.default_rng(seed).choice(n_records, limit, replace=False))


def card_path(model_path: Path | str) -> Path:
    """Where the JSON card of the model saved at ``model_path`` lives."""
    return Path(model_path).with_suffix(".json")


class ReportModel:
    """Scores reports with the probability that their answer should be accepted.

    ``feature_set="full"`` (the served model): gradient-boosted trees
    (``HistGradientBoostingClassifier``) over the dense similarity features, which carry over to
    courses, languages and scripts the model never saw. With ``stack_ngrams`` the log-odds of a
    logistic regression over hashed word n-grams join them as one more feature, cross-fitted:
    two regressions, each fit on half of the prompts, score the other half for training, and
    their mean scores new reports. ``feature_set="ngram"`` is the article's model, the
    logistic regression over hashed word unigrams and bigrams alone: the baseline row of the
    evaluation.
    """

    def __init__(
        self,
        feature_set: FeatureSet = "full",
        *,
        hash_bits: int = 18,
        c: float = 0.1,
        epochs: int = 10,
        random_state: int = 0,
        stack_ngrams: bool = False,
        trees: int = 200,
        learning_rate: float = 0.1,
        leaves: int = 31,
        max_tree_rows: int = _MAX_TREE_ROWS,
    ) -> None:
        self.extractor = FeatureExtractor(feature_set, hash_bits=hash_bits, hashed=stack_ngrams)
        self.hyperparameters: dict[str, float | int | str] = {
            "c": c,
            "epochs": epochs,
            "random_state": random_state,
            "solver": "saga",
        }
        if feature_set == "full":
            self.hyperparameters.update(
                {
                    "stack_ngrams": int(stack_ngrams),
                    "trees": trees,
                    "learning_rate": learning_rate,
                    "leaves": leaves,
                    "max_tree_rows": max_tree_rows,
                }
            )
        self.card: ModelCard | None = None
        self._regressions: list[LinearScorer] = []
        self._trees: HistGradientBoostingClassifier | None = None
        self._flat: FlatTrees | None = None

    @property
    def feature_set(self) -> FeatureSet:
        return self.extractor.feature_set

    @property
    def stacks_ngrams(self) -> bool:
        return bool(self.hyperparameters.get("stack_ngrams", 0))

    @property
    def is_fitted(self) -> bool:
        if self.feature_set == "ngram":
            return bool(self._regressions)
        return self._trees is not None and (bool(self._regressions) or not self.stacks_ngrams)

    def fit(
        self,
        records: Sequence[ReportRecord],
        *,
        n_jobs: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> ReportModel:
        """Fit on labelled records (unlabelled ones are ignored); needs both classes."""
        labelled = [record for record in records if record.label is not None]
        labels = np.array([record.label for record in labelled], dtype=bool)
        if labels.all() or not labels.any():
            raise InvalidInput(
                f"training needs correct and incorrect labelled reports; got {labels.sum()} "
                f"correct of {len(labels)} labelled",
            )
        if self.feature_set == "ngram":
            features = self.extractor.transform(labelled, n_jobs=n_jobs, progress=progress)
            self._regressions = [self._fit_regression(features.hashed, labels)]
            self.card = _card(self, labelled, labels, training_data_sha256(labelled))
            return self
        design, rows = self._stack_design(labelled, labels, n_jobs, progress)
        # The training data's digest (Python) is taken while the trees fit (compiled code that
        # releases the GIL), on the core the trees leave idle; nothing forks after this point.
        with ThreadPoolExecutor(max_workers=1) as pool:
            digest = pool.submit(training_data_sha256, labelled)
            self._fit_trees(design, labels[rows])
            self.card = _card(self, labelled, labels, digest.result())
        return self

    def _fit_regression(self, hashed: sparse.csr_matrix, labels: np.ndarray) -> LinearScorer:
        regression = LogisticRegression(
            C=float(self.hyperparameters["c"]),
            max_iter=int(self.hyperparameters["epochs"]),
            random_state=int(self.hyperparameters["random_state"]),
            solver="saga",
        )
        with warnings.catch_warnings():
            # A fixed budget of SAGA epochs: more do not raise held-out AUC but cost time.
            warnings.simplefilter("ignore", ConvergenceWarning)
            regression.fit(hashed, labels)
        return LinearScorer(regression.coef_.ravel().copy(), float(regression.intercept_[0]))

    def _stack_design(
        self,
        records: Sequence[ReportRecord],
        labels: np.ndarray,
        n_jobs: int,
        progress: Callable[[int], None] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The trees' design matrix and the positions of the records it holds."""
        seed = int(self.hyperparameters["random_state"])
        rows = _tree_rows(len(records), int(self.hyperparameters["max_tree_rows"]), seed)
        if self.stacks_ngrams:
            # The regressions learn from every report, so every report needs its features.
            features = self.extractor.transform(records, n_jobs=n_jobs, progress=progress)
            design = np.column_stack(
                [features.dense, self._cross_fitted_logits(records, features, labels)]
            )[rows]
            return design, rows
        # Only the reports the trees learn from need features; the course vocabularies still
        # absorb every training prompt's accepted list.
        self.extractor.observe(records)
        chosen = [records[i] for i in rows.tolist()]
        design = self.extractor.transform(chosen, n_jobs=n_jobs, progress=progress).dense
        if progress is not None:
            progress(len(records) - len(rows))  # the rest need no features
        return design, rows

    def _fit_trees(self, design: np.ndarray, labels: np.ndarray) -> None:
        self._trees = HistGradientBoostingClassifier(
            max_iter=int(self.hyperparameters["trees"]),
            learning_rate=float(self.hyperparameters["learning_rate"]),
            max_leaf_nodes=int(self.hyperparameters["leaves"]),
            # Large leaves generalize to other courses; small training sets need smaller ones.
            min_samples_leaf=int(np.clip(len(labels) // 500, 20, 200)),
            l2_regularization=5.0,
            early_stopping=False,
            random_state=int(self.hyperparameters["random_state"]),
        )
        # One OpenMP thread: on a shared machine a second one spins at every barrier while the
        # first waits for a core (measured: 18x slower under load); features use processes.
        with _openmp().limit(limits=1, user_api="openmp"):
            self._trees.fit(design.astype(np.float32), labels)
        self._flat = FlatTrees(self._trees)

    def _cross_fitted_logits(
        self, records: Sequence[ReportRecord], features: Features, labels: np.ndarray
    ) -> np.ndarray:
        """Log-odds of the n-gram regression for every record, each from a regression fit on
        the other half of the prompts (both kept, to score new reports by their mean)."""
        halves = _prompt_halves(records, int(self.hyperparameters["random_state"]))
        logits = np.zeros(len(records))
        self._regressions = []
        for half in (halves, ~halves):
            if labels[half].all() or not labels[half].any():
                half = np.ones(len(records), dtype=bool)  # too few prompts to split
            regression = self._fit_regression(features.hashed[half], labels[half])
            logits[~half] = regression.logits(features.hashed[~half])
            self._regressions.append(regression)
        return logits

    def decision_function(self, features: Features) -> np.ndarray:
        """Log-odds of being correct for already extracted features."""
        self._check_fitted()
        if self.feature_set == "ngram":
            return self._regressions[0].logits(features.hashed)
        design = features.dense
        if self.stacks_ngrams:
            logits = np.mean([r.logits(features.hashed) for r in self._regressions], axis=0)
            design = np.column_stack([design, logits])
        assert self._trees is not None  # checked above
        design = design.astype(np.float32)  # as the trees were fit
        if self._flat is not None and len(design) <= _FLAT_ROWS:
            return self._flat.decision_function(design)
        # One thread, as in ``fit``: batch scoring splits work over processes instead. Rows go
        # through the trees a block at a time: each tree reads its block from the CPU cache.
        with _openmp().limit(limits=1, user_api="openmp"):
            blocks = [
                self._trees.decision_function(design[start : start + _TREE_BLOCK_ROWS])
                for start in range(0, len(design), _TREE_BLOCK_ROWS)
            ]
        return np.asarray(np.concatenate(blocks), dtype=float)

    def score(
        self,
        records: Sequence[ReportLike],
        *,
        n_jobs: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Probability that each report's answer should be accepted, in input order."""
        self._check_fitted()
        if not records:
            return np.zeros(0)
        # Large batches are scored in forked workers, features and trees alike.
        scores = self.extractor.transform_apply(
            records,
            lambda features: np.asarray(expit(self.decision_function(features)), dtype=float),
            n_jobs=n_jobs,
            progress=progress,
        )
        return np.asarray(scores, dtype=float)

    def score_one(self, record: ReportLike) -> float:
        """``score`` of a single report (the review service's path for a new report)."""
        return float(self.score([record])[0])

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise InvalidInput("the report model is not trained yet")

    def save(self, path: Path | str) -> Path:
        """Write the model to ``path`` (joblib) and its card beside it; returns ``path``."""
        self._check_fitted()
        assert self.card is not None  # set by fit
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {"kind": _KIND, "format_version": FORMAT_VERSION, "model": self}
        joblib.dump(payload, target, compress=3)
        card_path(target).write_text(self.card.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: Path | str) -> ReportModel:
        """A model written by ``save``; ``InvalidInput`` for other files or format versions."""
        source = Path(path)
        try:
            payload: Any = joblib.load(source)
        except FileNotFoundError:
            raise InvalidInput(f"{source}: no model file there") from None
        except Exception as error:  # anything unpickling can raise
            raise InvalidInput(f"{source}: not a report model file ({error})") from None
        if not isinstance(payload, dict) or payload.get("kind") != _KIND:
            raise InvalidInput(f"{source}: not a report model file")
        version = payload.get("format_version")
        if version != FORMAT_VERSION:
            raise InvalidInput(
                f"{source}: model format version {version} cannot be read by this version of "
                f"Chorus, which reads version {FORMAT_VERSION}; train a new model with "
                "`chorus reports train`",
            )
        model = payload["model"]
        if not isinstance(model, cls) or not model.is_fitted:
            raise InvalidInput(f"{source}: not a trained report model")
        expected = DENSE_FEATURES if model.feature_set == "full" else ()
        if tuple(model.extractor.dense_names) != expected:
            raise InvalidInput(
                f"{source}: the model was trained on other features than this version of Chorus "
                "computes; train a new model with `chorus reports train`",
            )
        return model


DATA_LICENCES: dict[LabelSource, str] = {
    "simulated": "CC BY-NC 4.0: simulated from the Duolingo STAPLE 2020 gold data (Mayhew et al. "
    "2020); research and other non-commercial use only",
    "reviewers": "the deployment's own learner reports and contributor decisions",
}
INTENDED_USE = (
    "Ranks learners' reports that a translation should have been accepted, so course "
    "contributors review the likely-right ones first. A contributor decides every report; the "
    "score only orders the queue. Not for accepting or rejecting answers on its own, nor for "
    "judging learners."
)
LIMITATIONS = (
    "Trained on the labels named in label_source: simulated labels come from a simulator over "
    "STAPLE gold sets (an answer is correct when it is in the gold set), not from real "
    "learners' reports, and real reports may differ in their mix of errors.",
    "Scores are probabilities fit to the training labels' share of correct reports; a course "
    "whose reports are correct more or less often than the training data's gets "
    "systematically low or high scores, although its ranking holds.",
    "Features compare the answer with the prompt's accepted translations (characters, words, "
    "their order) and with the course's other accepted translations: an answer far from every "
    "accepted translation, or a prompt with few accepted translations, is ranked less reliably; "
    "a correct paraphrase that shares little with the accepted list ranks low.",
    "How many learners reported an answer (times_reported) weighs in: a popular wrong answer "
    "can rank high.",
)


def _card(
    model: ReportModel, records: Sequence[ReportRecord], labels: np.ndarray, data_sha256: str
) -> ModelCard:
    return ModelCard(
        format_version=FORMAT_VERSION,
        feature_set=model.feature_set,
        feature_names=(
            ["hashed word unigrams and bigrams"]
            if model.feature_set == "ngram"
            else [*model.extractor.dense_names]
            + (
                ["stacked regression over hashed word n-grams, new words and course"]
                if model.stacks_ngrams
                else []
            )
        ),
        hash_bits=model.extractor.hash_bits,
        hyperparameters=dict(model.hyperparameters),
        training_data_sha256=data_sha256,
        n_reports=len(records),
        n_correct=int(labels.sum()),
        n_prompts=len({(record.course, record.prompt_id) for record in records}),
        courses=dict(sorted(Counter(record.course for record in records).items())),
        metrics={},
        created=dt.datetime.now(dt.UTC).date().isoformat(),
        intended_use=INTENDED_USE,
        limitations=list(LIMITATIONS),
        sklearn_version=sklearn.__version__,
        python_version=platform.python_version(),
    )


def training_data_sha256(records: Sequence[ReportRecord]) -> str:
    """A digest of the training data (fields that affect the model, in order)."""
    digest = hashlib.sha256()
    accepted_digests: dict[tuple[str, ...], str] = {}
    for record in records:
        accepted = accepted_digests.get(record.accepted)
        if accepted is None:
            accepted = hashlib.sha256(json.dumps(record.accepted).encode()).hexdigest()
            accepted_digests[record.accepted] = accepted
        digest.update(
            "\x1f".join(
                (
                    record.course,
                    record.prompt_id,
                    record.prompt,
                    record.answer,
                    accepted,
                    str(record.times_reported),
                    str(record.label),
                )
            ).encode()
            + b"\n",
        )
    return digest.hexdigest()


def split_by_prompt(
    records: Sequence[ReportRecord],
    holdout_fraction: float,
    *,
    random_state: int = 0,
) -> tuple[list[int], list[int]]:
    """Positions of ``records`` for training and holding out, no prompt in both."""
    prompts = sorted({(record.course, record.prompt_id) for record in records})
    rng = np.random.default_rng(random_state)
    n_held = round(len(prompts) * holdout_fraction)
    held = {prompts[i] for i in rng.permutation(len(prompts))[:n_held].tolist()}
    train: list[int] = []
    test: list[int] = []
    for i, record in enumerate(records):
        (test if (record.course, record.prompt_id) in held else train).append(i)
    return train, test


def train_model(
    records: Sequence[ReportRecord],
    *,
    random_state: int = 0,
    feature_set: FeatureSet = "full",
    n_jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    label_source: LabelSource = "unknown",
    data_licence: str | None = None,
) -> ReportModel:
    """A model fit on all labelled ``records`` (its card's ``metrics`` are left empty; see
    ``evaluate.holdout_metrics``). The card names ``label_source`` and ``data_licence``
    (by default, for simulated labels, the STAPLE licence)."""
    model = ReportModel(feature_set, random_state=random_state)
    model.fit(records, n_jobs=n_jobs, progress=progress)
    assert model.card is not None  # set by fit
    licence = data_licence or DATA_LICENCES.get(label_source, "unspecified")
    model.card = model.card.model_copy(
        update={"label_source": label_source, "data_licence": licence}
    )
    return model
