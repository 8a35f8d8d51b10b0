"""Class-wise speaker normalisation over a release, keeping each clip's own content (P3).

Mapping every clip's long-term envelope onto one target leaves what a trained attacker uses
next: how each speaker colours each *kind* of sound (their vowels' formants, their nasals), the
per-class means a GMM supervector or an i-vector is built from. Mixing the release's mean frames
into each clip removes that, but overwrites the clip's own words with the release's.

Here the voiced frames of the whole release are clustered into acoustic classes (k-means on the
cepstra of the mapped log envelopes, drawn with the release's generator and held in memory
only). Each clip's frames are then moved, class by class, by the difference between the
release's mean envelope for the class and the clip's own, weighted by each frame's soft
membership and shrunk where the clip has few frames of the class. A frame keeps its place in
the sequence and its distance from its class's mean (what the clip says and how) but loses the
clip's per-class colouring (who says it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors

# Cepstral coefficients the classes are found on (c0, the frame's level, is left out).
COEFFICIENTS = 20
# A clip's class mean counts fully once the clip has this many frames' membership beyond it.
SHRINKAGE_FRAMES = 4.0
# Other clips' frames averaged into one (as in kNN-VC), and the most frames a release pools.
NEIGHBOURS = 4
POOLED_FRAMES = 50_000


@dataclass(frozen=True, eq=False)
class ReleaseClasses:
    """The release's acoustic classes: centroids in the cepstral domain, the release's mean
    log envelope per class, and the squared distance that scales soft membership."""

    centroids: np.ndarray
    means: np.ndarray
    scale: float

    def __repr__(self) -> str:
        return "ReleaseClasses(<computed for one release, not shown>)"


def cepstra(envelopes: np.ndarray) -> np.ndarray:
    """Frames' cepstra from their log envelopes, without c0."""
    return np.asarray(sfft.dct(envelopes, type=2, norm="ortho", axis=1)[:, 1 : COEFFICIENTS + 1])


def memberships(features: np.ndarray, classes: ReleaseClasses) -> np.ndarray:
    """Each frame's soft membership of each class (rows sum to 1)."""
    distances = ((features[:, None, :] - classes.centroids[None, :, :]) ** 2).sum(axis=2)
    logits = -(distances - distances.min(axis=1, keepdims=True)) / classes.scale
    weights = np.exp(logits)
    return np.asarray(weights / weights.sum(axis=1, keepdims=True))


def release_classes(
    envelopes: Sequence[np.ndarray], *, classes: int, rng: np.random.Generator
) -> ReleaseClasses | None:
    """The classes of the release's voiced frames (``envelopes``: one array per clip); None
    when the release has fewer frames than two per class."""
    if classes < 1:
        raise ValueError(f"{classes} classes: at least one is needed")
    pooled = np.concatenate([np.asarray(e, dtype=np.float64) for e in envelopes if len(e)])
    if len(pooled) < 2 * classes:
        return None
    features = cepstra(pooled)
    seed = int(rng.integers(2**31 - 1))
    model = KMeans(n_clusters=classes, n_init=1, random_state=seed).fit(features)
    scale = max(float(model.inertia_) / len(features), 1e-9)
    found = ReleaseClasses(np.asarray(model.cluster_centers_), np.zeros(0), scale)
    weights = memberships(features, found)
    means = (weights.T @ pooled) / np.maximum(weights.sum(axis=0), 1e-9)[:, None]
    return ReleaseClasses(found.centroids, means, scale)


def class_normalised(
    envelopes: np.ndarray, frames: np.ndarray, classes: ReleaseClasses, *, share: float
) -> np.ndarray:
    """``envelopes`` with each of ``frames`` (a mask) moved ``share`` of the way from the
    clip's per-class means to the release's, by its soft membership."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"class share {share} is outside [0, 1]")
    if share == 0.0 or not frames.any():
        return envelopes
    own = envelopes[frames]
    weights = memberships(cepstra(own), classes)
    counts = weights.sum(axis=0)
    clip_means = (weights.T @ own) / np.maximum(counts, 1e-9)[:, None]
    trust = (counts / (counts + SHRINKAGE_FRAMES))[:, None]
    offsets = trust * (classes.means - clip_means)
    out = envelopes.copy()
    out[frames] = own + share * (weights @ offsets)
    return out


@dataclass(frozen=True, eq=False)
class ReleaseFrames:
    """The release's voiced frames (mapped log envelopes), which clip each came from, and a
    nearest-neighbour index over their cepstra."""

    envelopes: np.ndarray
    owners: np.ndarray
    index: NearestNeighbors

    def __repr__(self) -> str:
        return "ReleaseFrames(<computed for one release, not shown>)"


def release_frames(
    envelopes: Sequence[np.ndarray], *, rng: np.random.Generator, limit: int = POOLED_FRAMES
) -> ReleaseFrames | None:
    """The pool of the release's voiced frames (``envelopes``: one array per clip, in the
    order that numbers the owners), at most ``limit`` of them drawn evenly; None when fewer
    than two clips have any."""
    owners = np.concatenate([np.full(len(e), i) for i, e in enumerate(envelopes)] + [[]])
    if len(np.unique(owners)) < 2:
        return None
    pooled = np.concatenate([np.asarray(e, dtype=np.float64) for e in envelopes if len(e)])
    if len(pooled) > limit:
        chosen = np.sort(rng.choice(len(pooled), limit, replace=False))
        pooled, owners = pooled[chosen], owners[chosen]
    index = NearestNeighbors().fit(cepstra(pooled))
    return ReleaseFrames(pooled, owners.astype(np.int64), index)


def neighbour_replaced(
    envelopes: np.ndarray,
    frames: np.ndarray,
    pool: ReleaseFrames,
    *,
    owner: int | None,
    share: float,
    neighbours: int = NEIGHBOURS,
) -> np.ndarray:
    """``envelopes`` with each of ``frames`` (a mask) moved ``share`` of the way to the mean of
    its ``neighbours`` nearest frames (by cepstrum) of the release's *other* clips, at its own
    level: the same sound, as the other speakers render it."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"neighbour share {share} is outside [0, 1]")
    own = envelopes[frames]
    if share == 0.0 or len(own) == 0:
        return envelopes
    own_in_pool = int(np.sum(pool.owners == owner)) if owner is not None else 0
    wanted = min(neighbours + own_in_pool, len(pool.owners))
    _, found = pool.index.kneighbors(cepstra(own), n_neighbors=wanted)
    others = pool.owners[found] != owner if owner is not None else np.ones(found.shape, bool)
    # The first ``neighbours`` of each row that belong to another clip (nearest first).
    rank = np.cumsum(others, axis=1)
    take = others & (rank <= neighbours)
    counts = np.maximum(take.sum(axis=1, keepdims=True), 1)
    replacement = (pool.envelopes[found] * take[:, :, None]).sum(axis=1) / counts
    replacement += own.mean(axis=1, keepdims=True) - replacement.mean(axis=1, keepdims=True)
    out = envelopes.copy()
    out[frames] = (1.0 - share) * own + share * replacement
    return out
