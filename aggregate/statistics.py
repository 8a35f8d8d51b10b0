"""Streaming statistics of a released batch: fixed-bin histograms and quantiles read from them.

A batch of 100,000 clips is summarised one value at a time, so memory does not grow with the
batch; histograms of several releases merge by adding their counts, which is how the
per-exercise aggregate is built. Only released clips are summarised (P6).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# Fixed bins, the same for every release, so histograms can be merged. Values outside the range
# land in the first or last bin.
DURATION_EDGES: tuple[float, ...] = tuple(round(0.25 * i, 2) for i in range(0, 121))  # 0–30 s
LOUDNESS_EDGES: tuple[float, ...] = tuple(float(v) for v in range(-100, 1, 2))  # -100–0 dBFS


@dataclass
class Histogram:
    """Counts over fixed bins ``[edges[i], edges[i+1])`` with running min, max and sum."""

    edges: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: int = 0
    value_sum: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def __post_init__(self) -> None:
        pairs = zip(self.edges, self.edges[1:], strict=False)
        if len(self.edges) < 2 or any(b <= a for a, b in pairs):
            raise ValueError("edges must be at least two strictly increasing values")
        if not self.counts:
            self.counts = [0] * (len(self.edges) - 1)
        if len(self.counts) != len(self.edges) - 1:
            raise ValueError("counts must have one entry per bin")

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            return
        self.counts[self._bin(value)] += 1
        self.total += 1
        self.value_sum += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    def _bin(self, value: float) -> int:
        lo, hi = 0, len(self.edges) - 1
        if value < self.edges[0]:
            return 0
        if value >= self.edges[-1]:
            return len(self.counts) - 1
        while hi - lo > 1:  # bisect: edges[lo] <= value < edges[hi]
            mid = (lo + hi) // 2
            if self.edges[mid] <= value:
                lo = mid
            else:
                hi = mid
        return lo

    def merge(self, other: Histogram) -> None:
        if other.edges != self.edges:
            raise ValueError("only histograms over the same bins can be merged")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.value_sum += other.value_sum
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated linearly inside its bin and clamped to [min, max]."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must lie in [0, 1]")
        if self.total == 0:
            return None
        target = q * self.total
        seen = 0
        for index, count in enumerate(self.counts):
            if count and seen + count >= target:
                low, high = self.edges[index], self.edges[index + 1]
                value = low + (high - low) * ((target - seen) / count)
                return min(max(value, self.minimum), self.maximum)
            seen += count
        return self.maximum

    def to_json(self) -> dict[str, Any]:
        empty = self.total == 0
        return {
            "count": self.total,
            "mean": None if empty else self.value_sum / self.total,
            "min": None if empty else self.minimum,
            "max": None if empty else self.maximum,
            "quantiles": {_quantile_name(q): self.quantile(q) for q in QUANTILES},
            "histogram": {"edges": list(self.edges), "counts": list(self.counts)},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        histogram = cls(
            edges=tuple(float(e) for e in data["histogram"]["edges"]),
            counts=[int(c) for c in data["histogram"]["counts"]],
        )
        histogram.total = int(data["count"])
        if histogram.total:
            histogram.value_sum = float(data["mean"]) * histogram.total
            histogram.minimum = float(data["min"])
            histogram.maximum = float(data["max"])
        return histogram


def _quantile_name(q: float) -> str:
    return f"p{round(q * 100):02d}"


@dataclass
class BatchStatistics:
    """Everything a release says about its clips, accumulated clip by clip."""

    clip_count: int = 0
    contributor_count: int = 0
    duration_s: Histogram = field(default_factory=lambda: Histogram(DURATION_EDGES))
    loudness_dbfs: Histogram = field(default_factory=lambda: Histogram(LOUDNESS_EDGES))
    sample_rates: dict[int, int] = field(default_factory=dict)

    def add(self, *, duration_s: float, sample_rate: int, loudness_dbfs: float) -> None:
        self.clip_count += 1
        self.duration_s.add(duration_s)
        self.loudness_dbfs.add(loudness_dbfs)
        self.sample_rates[sample_rate] = self.sample_rates.get(sample_rate, 0) + 1

    def merge(self, other: BatchStatistics) -> None:
        self.clip_count += other.clip_count
        self.contributor_count += other.contributor_count
        self.duration_s.merge(other.duration_s)
        self.loudness_dbfs.merge(other.loudness_dbfs)
        for rate, count in other.sample_rates.items():
            self.sample_rates[rate] = self.sample_rates.get(rate, 0) + count

    def to_json(self) -> dict[str, Any]:
        return {
            "clip_count": self.clip_count,
            "contributor_count": self.contributor_count,
            "duration_s": self.duration_s.to_json(),
            "loudness_dbfs": self.loudness_dbfs.to_json(),
            "sample_rates": {str(rate): n for rate, n in sorted(self.sample_rates.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchStatistics:
        return cls(
            clip_count=int(data["clip_count"]),
            contributor_count=int(data["contributor_count"]),
            duration_s=Histogram.from_json(data["duration_s"]),
            loudness_dbfs=Histogram.from_json(data["loudness_dbfs"]),
            sample_rates={int(rate): int(n) for rate, n in data["sample_rates"].items()},
        )


def merge_all(batches: Iterable[BatchStatistics]) -> BatchStatistics:
    total = BatchStatistics()
    for batch in batches:
        total.merge(batch)
    return total


def summarise(
    values: Sequence[tuple[float, int, float]], *, contributor_count: int
) -> BatchStatistics:
    """Statistics of ``(duration_s, sample_rate, loudness_dbfs)`` triples (tests, benchmarks)."""
    stats = BatchStatistics(contributor_count=contributor_count)
    for duration, rate, loudness in values:
        stats.add(duration_s=duration, sample_rate=rate, loudness_dbfs=loudness)
    return stats
