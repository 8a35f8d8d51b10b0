"""The report simulator on real STAPLE prompts: seeded, grouped, labelled by the gold set."""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest

from reports_ml.evaluate import roc_auc_score
from reports_ml.models import Prompt, ReportRecord
from reports_ml.simulate import SimulationParams, simulate_course, simulate_reports
from reports_ml.staple import load_staple
from reports_ml.text import normalize_answer
from tests.datasets import STAPLE_DIR as STAPLE


@functools.cache
def _prompts(name: str) -> list[Prompt]:
    return load_staple(STAPLE / name)


def _pt(count: int) -> list[Prompt]:
    return _prompts("excerpt.en_pt.gold.txt")[:count]


def _vi(count: int) -> list[Prompt]:
    return _prompts("excerpt.en_vi.gold.txt")[:count]


def _keys(records: list[ReportRecord]) -> list[tuple[str, str, int, bool | None]]:
    return [(r.report_id, r.answer, r.times_reported, r.label) for r in records]


def test_same_seed_same_reports_other_seed_other_reports() -> None:
    first = simulate_course("en_pt", _pt(40), seed=3)
    assert _keys(first) == _keys(simulate_course("en_pt", _pt(40), seed=3))
    assert _keys(first) != _keys(simulate_course("en_pt", _pt(40), seed=4))


def test_a_prompts_reports_do_not_depend_on_file_order() -> None:
    forward = simulate_course("en_pt", _pt(40), seed=5)
    backward = simulate_course("en_pt", _pt(40)[::-1], seed=5)
    assert sorted(_keys(forward)) == sorted(_keys(backward))


def test_reports_are_grouped_and_labelled_by_the_gold_set() -> None:
    prompts = {p.prompt_id: p for p in _pt(60)}
    records = simulate_course("en_pt", list(prompts.values()), seed=11)
    assert len({r.report_id for r in records}) == len(records)
    seen: Counter[tuple[str, str]] = Counter()
    for record in records:
        prompt = prompts[record.prompt_id]
        texts = [t.text for t in prompt.translations]
        form = normalize_answer(record.answer)
        seen[(record.prompt_id, form)] += 1
        assert record.course == "en_pt"
        assert record.prompt == prompt.text
        assert record.times_reported >= 1
        # the accepted list is the most frequent part of the gold set
        assert list(record.accepted) == texts[: len(record.accepted)]
        assert form not in {normalize_answer(t) for t in record.accepted}
        assert record.label == (form in {normalize_answer(t) for t in texts})
    assert max(seen.values()) == 1  # one record per distinct answer of a prompt


def test_correct_share_and_count_ranking_are_in_the_articles_region() -> None:
    records = simulate_reports({"en_pt": _pt(200), "en_vi": _vi(150)}, seed=1)
    labels = np.array([bool(r.label) for r in records])
    counts = np.array([r.times_reported for r in records])
    assert len(records) > 5_000
    assert 0.05 < labels.mean() < 0.2
    assert 0.52 < roc_auc_score(labels, counts) < 0.68
    assert counts[~labels].max() > 5  # some mistakes are common ones, made by many learners


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown mistake kinds"):
        SimulationParams(mistake_weights={"telepathy": 1.0})
    with pytest.raises(ValueError, match="coverage"):
        SimulationParams(coverage_min=0.9, coverage_max=0.5)
