"""The held-out report generator: other scripts, other mistakes, labelled by the gold set."""

from __future__ import annotations

import functools
import re
from collections import Counter

import numpy as np
import pytest

from reports_ml.models import Prompt, ReportRecord
from reports_ml.simulate import simulate_reports
from reports_ml.simulate_holdout import render_course, simulate_holdout
from reports_ml.staple import load_staple
from reports_ml.text import normalize_answer
from tests.datasets import STAPLE_DIR as STAPLE


@functools.cache
def _prompts() -> dict[str, list[Prompt]]:
    return {"en_pt": load_staple(STAPLE / "excerpt.en_pt.gold.txt")[:40]}


@functools.cache
def _reports() -> tuple[ReportRecord, ...]:
    return tuple(simulate_holdout(_prompts(), seed=3))


def test_every_course_is_also_written_in_korean_thai_and_japanese() -> None:
    by_course: dict[str, list[ReportRecord]] = {}
    for record in _reports():
        by_course.setdefault(record.course, []).append(record)
    assert set(by_course) == {"en_pt", "en_pt~ko", "en_pt~th", "en_pt~ja"}
    hangul, thai, kana = (re.compile(p) for p in ("[가-힣]", "[ก-๛]", "[ぁ-ゖ一-鿿]"))
    assert all(hangul.search(r.answer) for r in by_course["en_pt~ko"])
    assert all(thai.search(r.answer) for r in by_course["en_pt~th"])
    assert all(kana.search(r.answer) for r in by_course["en_pt~ja"])
    assert not any(" " in normalize_answer(r.answer) for r in by_course["en_pt~ja"])
    assert any(" " in normalize_answer(r.answer) for r in by_course["en_pt~ko"])


def test_labels_follow_the_rendered_gold_set_and_accepted_answers_are_never_reported() -> None:
    prompts = {p.prompt_id: p for p in render_course(_prompts()["en_pt"], "ko")}
    for record in _reports():
        if record.course != "en_pt~ko":
            continue
        gold = {normalize_answer(t.text) for t in prompts[record.prompt_id].translations}
        assert record.label == (normalize_answer(record.answer) in gold)
        assert normalize_answer(record.answer) not in {normalize_answer(a) for a in record.accepted}


def test_same_seed_same_reports_and_a_mix_unlike_the_first_generator() -> None:
    again = simulate_holdout(_prompts(), seed=3)
    assert [(r.report_id, r.times_reported) for r in again] == [
        (r.report_id, r.times_reported) for r in _reports()
    ]
    first = simulate_reports(_prompts(), seed=3)
    share = np.mean([bool(r.label) for r in _reports() if r.course == "en_pt"])
    first_share = np.mean([bool(r.label) for r in first])
    assert share > first_share + 0.05  # more correct reports than the first generator
    one_accepted = Counter(len(r.accepted) == 1 for r in _reports())
    assert one_accepted[True] > 0.2 * len(_reports())  # single accepted answers are common


def test_unknown_script_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown script"):
        render_course(_prompts()["en_pt"], "xx")
