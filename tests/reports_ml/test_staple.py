"""STAPLE gold files and report records: the real files load, malformed input is pinpointed."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from core.errors import InvalidInput
from reports_ml.models import ReportRecord
from reports_ml.staple import (
    course_from_path,
    load_staple,
    read_records,
    write_records,
)
from tests.datasets import STAPLE_DIR

FILES = {
    "dev.en_hu.2020-02-20.gold.txt": ("en_hu", 500),
    "test.en_hu.2020-02-20.gold.txt": ("en_hu", 500),
    "dev.en_pt.2020-02-20.gold.txt": ("en_pt", 500),
    "train-split-a.en_vi.2020-01-13.gold.txt": ("en_vi", 350),
}


EXCERPTS = {
    "excerpt.en_hu.gold.txt": ("en_hu", 30),
    "excerpt.en_pt.gold.txt": ("en_pt", 60),
    "excerpt.en_vi.gold.txt": ("en_vi", 60),
}


@pytest.mark.full_data
@pytest.mark.parametrize(("name", "expected"), FILES.items())
def test_real_staple_files_load(full_data: Path, name: str, expected: tuple[str, int]) -> None:
    _check_gold_file(full_data / "staple" / name, *expected)


@pytest.mark.parametrize(("name", "expected"), EXCERPTS.items())
def test_shipped_staple_excerpts_load(name: str, expected: tuple[str, int]) -> None:
    _check_gold_file(STAPLE_DIR / name, *expected)


def _check_gold_file(path: Path, course: str, n_prompts: int) -> None:
    prompts = load_staple(path)
    assert course_from_path(path) == course
    assert len(prompts) == n_prompts
    assert len({p.prompt_id for p in prompts}) == n_prompts
    for prompt in prompts:
        weights = [t.weight for t in prompt.translations]
        assert math.isclose(sum(weights), 1.0, abs_tol=1e-6)
        assert weights == sorted(weights, reverse=True)


def test_real_file_content_is_read_exactly() -> None:
    # The excerpt is the head of dev.en_hu.2020-02-20.gold.txt, unchanged.
    first = load_staple(STAPLE_DIR / "excerpt.en_hu.gold.txt")[0]
    assert first.prompt_id == "prompt_bde43302e530441c0afdea532cbbd419"
    assert first.text == "i think about her night and day."
    assert first.translations[0].text == "éjjel nappal rá gondolok."
    assert first.translations[0].weight == pytest.approx(0.1099511549627024)


GOOD_BLOCK = "prompt_a1|hello.\nszia.|0.75\nhelló.|0.25\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD_BLOCK + "\nprompt_b2|bye.\nviszlát.\n", ":6: expected '<translation>|<weight>'"),
        (GOOD_BLOCK + "\nprompt_b2|bye.\nviszlát.|lots\n", ":6: weight 'lots' is not a number"),
        (GOOD_BLOCK + "\nprompt_b2|bye.\nviszlát.|1.5\n", ":6: weight 1.5 is outside 0..1"),
        (GOOD_BLOCK + "\nbye.\nviszlát.|1.0\n", ":5: expected 'prompt_<id>|<English prompt>'"),
        (GOOD_BLOCK + "\nprompt_b2|bye.\n", ":5: prompt prompt_b2 has no translations"),
        (GOOD_BLOCK + "\n" + GOOD_BLOCK, ":5: prompt prompt_a1 already appeared on line 1"),
        ("prompt_a1|hello.\nszia.|0.5\n", ":1: weights of prompt prompt_a1 sum to 0.5000, not 1"),
        ("\n\n", "no prompts found"),
    ],
)
def test_malformed_staple_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.en_hu.gold.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput) as caught:
        load_staple(path)
    assert str(path) in caught.value.detail
    assert message in caught.value.detail


def test_course_must_be_in_the_file_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot tell the course"):
        course_from_path(tmp_path / "gold.txt")


def _record(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "report_id": "r1",
        "course": "en_pt",
        "prompt_id": "prompt_1",
        "prompt": "i am here.",
        "answer": "Eu estou aqui",
        "accepted": ["eu estou aqui.", "estou aqui."],
        "times_reported": 3,
        "label": True,
    }
    record.update(changes)
    return record


def test_records_round_trip_and_share_accepted_lists(tmp_path: Path) -> None:
    records = [
        ReportRecord.model_validate(
            {**_record(report_id=f"r{i}", answer=f"resposta {i}"), "accepted": ("a.", "b.")},
        )
        for i in range(3)
    ]
    scored = records[0].model_copy(update={"score": 0.25})
    buffer = io.StringIO()
    assert write_records([scored, *records[1:]], buffer) == 3
    lines = buffer.getvalue().splitlines()
    assert json.loads(lines[0])["score"] == 0.25
    assert "score" not in json.loads(lines[1])
    path = tmp_path / "reports.jsonl"
    path.write_text(buffer.getvalue() + "\n", encoding="utf-8")
    read = read_records(path)
    assert [r.answer for r in read] == ["resposta 0", "resposta 1", "resposta 2"]
    assert read[0].score == 0.25
    assert read[1].accepted == ("a.", "b.")
    assert read[1].accepted is read[2].accepted  # one copy per distinct list


def _line(**changes: object) -> str:
    return json.dumps(_record(report_id="r2", **changes))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"report_id": "r2", ', "not valid JSON"),
        (_line(times_reported="3"), "times_reported: Input should be a valid integer"),
        (_line(times_reported=0), "times_reported: Input should be greater than or equal to 1"),
        (_line(label="yes"), "label: Input should be a valid boolean"),
        (_line(answer="?!"), "answer: Value error, answer has no words"),
        (_line(time_reported=2), "time_reported: unknown field"),
        (_line(course=None), "course: Input should be a valid string"),
        (json.dumps({"report_id": "r2"}), "course: Field required (and 5 more problems)"),
        (json.dumps(_record()), "report_id 'r1' already used on line 1"),
    ],
)
def test_malformed_record_lines_name_line_and_field(
    tmp_path: Path,
    line: str,
    message: str,
) -> None:
    path = tmp_path / "reports.jsonl"
    path.write_text(json.dumps(_record()) + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as caught:
        read_records(path)
    assert caught.value.detail.startswith(f"{path}:3: ")
    assert message in caught.value.detail
