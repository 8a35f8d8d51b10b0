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
    features, walked all at once (``decision_function`` gives the same log-odds).

    Every node's test is made once per report, for all nodes at once (one gather and one
    comparison); the walk then only looks the tests up, a level at a time. Leaves lead to
    themselves, so walking as deep as the deepest tree leaves every report on its leaves.
    """

    def __init__(self, model: HistGradientBoostingClassifier) -> None:
        predictors = [iteration[0] for iteration in model._predictors]
        sizes = np.array([len(p.nodes) for p in predictors], dtype=np.intp)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        nodes = np.concatenate([p.nodes for p in predictors])
        shift = np.repeat(offsets, sizes)
        leaf = nodes["is_leaf"].astype(bool)
        itself = np.arange(len(nodes), dtype=np.intp)
        left = np.where(leaf, itself, nodes["left"].astype(np.intp) + shift)
        right = np.where(leaf, itself, nodes["right"].astype(np.intp) + shift)
        self.roots = offsets
        self.n_nodes = len(nodes)
        # children[2 * node] is the right child, children[2 * node + 1] the left one.
        self.children = np.stack([right, left], axis=1).ravel()
        self.feature = np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp)
        self.threshold = nodes["num_threshold"].astype(np.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.value = nodes["value"].astype(np.float64)
        self.depth = int(nodes["depth"].max()) if len(nodes) else 0
        self.baseline = float(np.ravel(model._baseline_prediction)[0])

    def decision_function(self, design: np.ndarray) -> np.ndarray:
        """Log-odds of each row of ``design`` (rows: reports, columns: features)."""
        values = np.asarray(design, dtype=np.float64)
        tested = values[:, self.feature]
        left = tested <= self.threshold
        missing = np.isnan(tested)
        if missing.any():
            left = np.where(missing, self.missing_left, left)
        goes_left = left.ravel().view(np.uint8)
        row_start = (np.arange(len(values), dtype=np.intp) * self.n_nodes)[:, None]
        node = np.broadcast_to(self.roots, (len(values), len(self.roots)))
        for _ in range(self.depth):
            node = self.children[2 * node + goes_left[node + row_start]]
        return np.asarray(self.baseline + self.value[node].sum(axis=1), dtype=float)
