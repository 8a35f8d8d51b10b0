"""``chorus reports simulate | train | evaluate | score`` end to end on a sample of real prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chorus.cli import app
from reports_ml.staple import load_staple, read_records
from tests.datasets import STAPLE_DIR as STAPLE


def _sample(source: str, target: Path, count: int) -> Path:
    """The first ``count`` prompts of a real gold file, in the gold file format."""
    blocks = []
    for prompt in load_staple(STAPLE / source)[:count]:
        lines = [f"{prompt.prompt_id}|{prompt.text}"]
        lines += [f"{t.text}|{t.weight!r}" for t in prompt.translations]
        blocks.append("\n".join(lines))
    target.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scorer-cli")
    _sample("excerpt.en_pt.gold.txt", folder / "sample.en_pt.gold.txt", 50)
    _sample("excerpt.en_vi.gold.txt", folder / "sample.en_vi.gold.txt", 50)
    return folder


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["reports", *args])
    return result.exit_code, result.stdout, result.stderr


def test_simulate_train_evaluate_score(workspace: Path) -> None:
    data = workspace / "reports.jsonl"
    code, out, err = _run(
        "simulate",
        str(workspace / "sample.en_pt.gold.txt"),
        str(workspace / "sample.en_vi.gold.txt"),
        "--out",
        str(data),
        "--seed",
        "3",
    )
    assert code == 0, err
    records = read_records(data)
    assert f"wrote {len(records)} reports" in out
    assert "for 100 prompts of 2 course(s)" in out
    assert {r.course for r in records} == {"en_pt", "en_vi"}

    model = workspace / "scorer.joblib"
    code, out, err = _run("train", str(data), "--model", str(model), "--seed", "1")
    assert code == 0, err
    card = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["n_reports"] == len(records)
    assert card["metrics"]["holdout_auc"] > card["metrics"]["holdout_count_baseline_auc"]
    assert card["label_source"] == "simulated"
    assert card["data_licence"].startswith("CC BY-NC 4.0")
    assert card["sklearn_version"]
    assert card["intended_use"]
    assert "held-out prompts: AUC" in out

    code, out, err = _run("evaluate", str(data), "--model", str(model), "--json")
    assert code == 0, err
    evaluation = json.loads(out)
    assert evaluation["overall"]["n_reports"] == len(records)
    assert set(evaluation["courses"]) == {"en_pt", "en_vi"}
    assert evaluation["overall"]["auc"]["model"] > evaluation["overall"]["auc"]["count"]

    scored = workspace / "scored.jsonl"
    code, out, err = _run("score", str(data), "--model", str(model), "--out", str(scored))
    assert code == 0, err
    rescored = read_records(scored)
    assert [r.report_id for r in rescored] == [r.report_id for r in records]
    assert all(r.score is not None and 0.0 <= r.score <= 1.0 for r in rescored)


def test_evaluate_leave_one_course_out_with_plot(workspace: Path) -> None:
    data = workspace / "loco.jsonl"
    assert (
        _run(
            "simulate",
            str(workspace / "sample.en_pt.gold.txt"),
            str(workspace / "sample.en_vi.gold.txt"),
            "--out",
            str(data),
        )[0]
        == 0
    )
    plot = workspace / "auc.png"
    code, out, err = _run("evaluate", str(data), "--split", "course", "--plot", str(plot))
    assert code == 0, err
    assert "leave one course out" in out
    assert "n-gram regression" in out
    assert "count baseline" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_malformed_data_is_one_clear_line(workspace: Path) -> None:
    data = workspace / "bad.jsonl"
    data.write_text('{"report_id": "r1"}\n', encoding="utf-8")
    code, _, err = _run("train", str(data), "--model", str(workspace / "never.joblib"))
    assert code == 2
    assert err.startswith(f"chorus: {data}:1: course: Field required")
    assert "Traceback" not in err
    assert not (workspace / "never.joblib").exists()


def test_evaluate_needs_a_model_or_a_split(workspace: Path) -> None:
    data = workspace / "empty.jsonl"
    data.write_text("", encoding="utf-8")
    code, _, err = _run("evaluate", str(data))
    assert code == 2
    assert "give either --model" in err


def test_score_with_a_missing_model_fails_clearly(workspace: Path) -> None:
    data = workspace / "empty.jsonl"
    data.write_text("", encoding="utf-8")
    code, _, err = _run("score", str(data), "--model", str(workspace / "missing.joblib"))
    assert code == 2
    assert "no model file there" in err


def test_skip_invalid_leaves_out_and_counts_malformed_lines(workspace: Path) -> None:
    data = workspace / "reports-skip.jsonl"
    assert (
        _run(
            "simulate",
            str(workspace / "sample.en_pt.gold.txt"),
            str(workspace / "sample.en_vi.gold.txt"),
            "--out",
            str(data),
            "--seed",
            "5",
        )[0]
        == 0
    )
    good = data.read_text(encoding="utf-8").splitlines()
    first = json.loads(good[0])
    damaged = workspace / "damaged.jsonl"
    damaged.write_text(
        "\n".join(
            [
                good[0],
                "{not json",  # line 2
                *good[1:40],
                json.dumps({**first, "answer": 7}),  # line 42: wrong type
                json.dumps(first),  # line 43: report_id repeated
                *good[40:],
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    model = workspace / "skip.joblib"
    # Without the option the first malformed line stops the run, as before.
    code, _, err = _run("train", str(damaged), "--model", str(model), "--holdout", "0")
    assert code == 2
    assert f"{damaged}:2:" in err
    assert not model.exists()

    code, out, err = _run(
        "train", str(damaged), "--model", str(model), "--holdout", "0", "--skip-invalid"
    )
    assert code == 0, err
    assert f"skipped 3 invalid line(s) of {damaged}" in err
    for line in (2, 42, 43):
        assert f"{damaged}:{line}:" in err
    card = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["n_reports"] == len(good)

    scored = workspace / "skip-scored.jsonl"
    code, out, err = _run(
        "score", str(damaged), "--model", str(model), "--out", str(scored), "--skip-invalid"
    )
    assert code == 0, err
    assert "skipped 3 invalid line(s)" in err
    assert f"wrote {len(good)} scored reports" in out
    assert len(read_records(scored)) == len(good)
