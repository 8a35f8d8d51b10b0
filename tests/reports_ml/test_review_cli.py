"""``chorus reports import-staple``, ``retrain`` and ``models list|promote``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from chorus.cli import app
from core.db import Database
from core.settings import reset_settings_cache
from reports_ml.staple import load_staple
from reports_ml.tables import AcceptedTranslation, CoursePrompt
from tests.datasets import STAPLE_DIR as STAPLE


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CHORUS_DATABASE_URL", url)
    monkeypatch.setenv("CHORUS_MODEL_DIR", str(tmp_path / "models"))
    reset_settings_cache()
    yield url
    reset_settings_cache()


def test_import_staple_loads_prompts_and_translations(env: str) -> None:
    runner = CliRunner()
    staple = STAPLE / "excerpt.en_vi.gold.txt"
    result = runner.invoke(app, ["reports", "import-staple", str(staple), "--course", "en_vi"])
    assert result.exit_code == 0, result.output
    assert "en_vi:" in result.output
    assert "prompts added" in result.output
    database = Database(env)
    try:
        with database.session() as session:
            prompts = session.scalar(sa.select(sa.func.count()).select_from(CoursePrompt))
            translations = session.scalar(
                sa.select(sa.func.count()).select_from(AcceptedTranslation)
            )
    finally:
        database.dispose()
    assert prompts == len(load_staple(staple))
    assert translations is not None
    assert translations > prompts
    again = runner.invoke(app, ["reports", "import-staple", str(staple), "--course", "en_vi"])
    assert "0 prompts added" in again.output


def test_retrain_without_labels_and_models_commands(env: str) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["reports", "models", "list"])
    assert listed.exit_code == 0
    assert "no model versions yet" in listed.output
    retrained = runner.invoke(app, ["reports", "retrain", "--min-new-labels", "1"])
    assert retrained.exit_code == 0, retrained.output
    assert retrained.output.startswith("skipped: 0 new labels")
    missing = runner.invoke(app, ["reports", "models", "promote", "0007"])
    assert missing.exit_code == 2
    assert "no model version '0007'" in missing.output


def test_models_list_marks_the_promoted_version_and_promote_switches(
    env: str, tmp_path: Path
) -> None:
    from reports_ml.model import ReportModel
    from reports_ml.registry import ModelRegistry
    from reports_ml.simulate import simulate_course
    from reports_ml.staple import load_staple

    records = simulate_course(
        "en_pt", load_staple(STAPLE / "excerpt.en_pt.gold.txt")[:10], seed=1
    )
    registry = ModelRegistry(tmp_path / "models")
    model = ReportModel(hash_bits=12).fit(records)
    info = {"created": "2026-01-02T03:04:05+00:00", "trained_on": len(records), "held_back": 0,
            "auc": 0.81234}
    first = registry.add(model, info).version
    second = registry.add(model, info).version
    registry.promote(second)
    runner = CliRunner()
    listed = runner.invoke(app, ["reports", "models", "list"]).output.splitlines()
    assert listed[1].startswith(f"  {first} ")
    assert listed[2].startswith(f"* {second} ")
    assert "0.8123" in listed[1]
    promoted = runner.invoke(app, ["reports", "models", "promote", first])
    assert promoted.exit_code == 0, promoted.output
    assert f"version {first} promoted; 0 open reports rescored" in promoted.output
    assert registry.promoted_version() == first
