"""Streaming histogram statistics against numpy on seeded data."""

from __future__ import annotations

import numpy as np
import pytest

from aggregate.statistics import (
    DURATION_EDGES,
    BatchStatistics,
    Histogram,
    merge_all,
    summarise,
)


def test_histogram_quantiles_are_within_one_bin_of_numpy() -> None:
    rng = np.random.default_rng(7)
    values = rng.gamma(shape=4.0, scale=0.6, size=20_000)
    histogram = Histogram(DURATION_EDGES)
    for value in values:
        histogram.add(float(value))
    assert np.histogram(np.clip(values, 0, 29.99), bins=DURATION_EDGES)[0].tolist() == (
        histogram.counts
    )
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        assert histogram.quantile(q) == pytest.approx(np.quantile(values, q), abs=0.25)
    summary = histogram.to_json()
    assert summary["mean"] == pytest.approx(values.mean())
    assert summary["min"] == pytest.approx(values.min())
    assert summary["max"] == pytest.approx(values.max())


def test_merging_batches_equals_summarising_them_together() -> None:
    rng = np.random.default_rng(11)
    rows = [
        (float(d), 16000, float(loud))
        for d, loud in zip(rng.uniform(0.3, 5, 500), rng.uniform(-60, -5, 500), strict=True)
    ]
    first = summarise(rows[:200], contributor_count=5)
    second = summarise(rows[200:], contributor_count=7)
    merged = merge_all(
        [BatchStatistics.from_json(first.to_json()), BatchStatistics.from_json(second.to_json())]
    )
    together = summarise(rows, contributor_count=12)
    merged_json, together_json = merged.to_json(), together.to_json()
    assert merged_json["duration_s"]["histogram"] == together_json["duration_s"]["histogram"]
    assert merged.clip_count == 500
    assert merged.contributor_count == 12
    assert merged.to_json()["loudness_dbfs"]["quantiles"] == pytest.approx(
        together.to_json()["loudness_dbfs"]["quantiles"]
    )
    assert merged.sample_rates == {16000: 500}


def test_an_empty_histogram_has_no_quantiles() -> None:
    summary = Histogram(DURATION_EDGES).to_json()
    assert summary["count"] == 0
    assert summary["quantiles"]["p50"] is None
