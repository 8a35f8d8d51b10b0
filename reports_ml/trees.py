"""Gradient-boosted trees flattened into arrays, for scoring a few reports quickly.

scikit-learn's ``HistGradientBoostingClassifier`` predicts tree by tree, with a Python call per
tree: for one report and 200 trees that is about 2-5 ms, more than the features cost. Here
every tree's nodes sit in one set of arrays and all trees are walked at once, a level at a
time, in NumPy: a small batch costs a few dozen array operations. Large batches keep
scikit-learn's compiled loop, which is faster per report there. The two agree to rounding
(tested).
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

__all__ = ["FlatTrees"]


class FlatTrees:
    """The trees of a fitted binary ``HistGradientBoostingClassifier`` without categorical
    features, walked all at once (``decision_function`` gives the same log-odds)."""

    def __init__(self, model: HistGradientBoostingClassifier) -> None:
        predictors = [iteration[0] for iteration in model._predictors]
        sizes = np.array([len(p.nodes) for p in predictors], dtype=np.intp)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        nodes = np.concatenate([p.nodes for p in predictors])
        shift = np.repeat(offsets, sizes)
        self.roots = offsets
        self.leaf = nodes["is_leaf"].astype(bool)
        self.feature = nodes["feature_idx"].astype(np.intp)
        self.threshold = nodes["num_threshold"].astype(np.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.left = np.where(self.leaf, 0, nodes["left"].astype(np.intp) + shift)
        self.right = np.where(self.leaf, 0, nodes["right"].astype(np.intp) + shift)
        self.value = nodes["value"].astype(np.float64)
        self.depth = int(nodes["depth"].max()) if len(nodes) else 0
        self.baseline = float(np.ravel(model._baseline_prediction)[0])

    def decision_function(self, design: np.ndarray) -> np.ndarray:
        """Log-odds of each row of ``design`` (rows: reports, columns: features)."""
        values = np.asarray(design, dtype=np.float64)
        node = np.broadcast_to(self.roots, (len(values), len(self.roots))).copy()
        rows = np.arange(len(values))[:, None]
        for _ in range(self.depth):
            inner = ~self.leaf[node]
            if not inner.any():
                break
            x = values[rows, self.feature[node]]
            left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            node = np.where(inner, np.where(left, self.left[node], self.right[node]), node)
        return np.asarray(self.baseline + self.value[node].sum(axis=1), dtype=float)
