"""What the review service scores reports with: a trained model, or the count heuristic.

Until a model is promoted, reports are ranked by the heuristic contributors used before any
model existed: the number of learners who sent the answer. Its score,
``1 - 1 / (1 + times_reported)``, orders reports exactly as ``times_reported`` does and stays in
0-1 like a model's probability. The queue says which scorer produced its order.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from reports_ml.models import ReportLike

__all__ = ["HEURISTIC", "HeuristicScorer", "ModelScorer", "ReportScorer", "Scorer"]

HEURISTIC_NOTE = (
    "no model is promoted yet: reports are ranked by how many learners sent them "
    "(score = 1 - 1/(1 + times_reported))"
)


class ReportScorer(Protocol):
    """The part of ``reports_ml.model.ReportModel`` the service uses."""

    def score(self, records: Sequence[ReportLike]) -> NDArray[np.float64]: ...


class Scorer(Protocol):
    @property
    def kind(self) -> Literal["model", "heuristic"]: ...
    @property
    def version(self) -> str: ...
    def score(self, records: Sequence[ReportLike]) -> NDArray[np.float64]: ...


@dataclass(frozen=True)
class HeuristicScorer:
    kind: Literal["heuristic"] = "heuristic"
    version: str = "heuristic"

    def score(self, records: Sequence[ReportLike]) -> NDArray[np.float64]:
        counts = np.array([r.times_reported for r in records], dtype=np.float64)
        return 1.0 - 1.0 / (1.0 + counts)


HEURISTIC = HeuristicScorer()


@dataclass(frozen=True)
class ModelScorer:
    """A model version. Scoring is serialized: the feature extractor updates its caches."""

    version: str
    model: ReportScorer
    kind: Literal["model"] = "model"
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def score(self, records: Sequence[ReportLike]) -> NDArray[np.float64]:
        if not records:
            return np.zeros(0, dtype=np.float64)
        with self._lock:
            return np.asarray(self.model.score(records), dtype=np.float64)
