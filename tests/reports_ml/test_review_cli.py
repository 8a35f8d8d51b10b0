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
    monkeypatch.setenv("CHORUS_STORAGE_URL", f"file://{tmp_path / 'blobs'}")
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
    from core.storage import open_store
    from reports_ml.model import ReportModel
    from reports_ml.registry import ModelRegistry
    from reports_ml.simulate import simulate_course
    from reports_ml.staple import load_staple

    records = simulate_course("en_pt", load_staple(STAPLE / "excerpt.en_pt.gold.txt")[:10], seed=1)
    database = Database(env)
    database.upgrade()
    registry = ModelRegistry(database, open_store(f"file://{tmp_path / 'blobs'}"))
    model = ReportModel(hash_bits=12).fit(records)
    info = {
        "created": "2026-01-02T03:04:05+00:00",
        "trained_on": len(records),
        "held_back": 0,
        "auc": 0.81234,
    }
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
    database.dispose()


def test_models_import_stores_a_trained_model_and_can_promote_it(env: str, tmp_path: Path) -> None:
    from core.storage import open_store
    from reports_ml.model import ReportModel
    from reports_ml.registry import ModelRegistry
    from reports_ml.simulate import simulate_course
    from reports_ml.staple import load_staple

    records = simulate_course("en_pt", load_staple(STAPLE / "excerpt.en_pt.gold.txt")[:10], seed=1)
    trained = ReportModel(hash_bits=12).fit(records)
    assert trained.card is not None
    trained.card = trained.card.model_copy(
        update={
            "metrics": {
                "holdout_reports": 40.0,
                "holdout_auc": 0.7712,
                "holdout_count_baseline_auc": 0.61,
            }
        }
    )
    path = trained.save(tmp_path / "trained.joblib")
    not_a_model = tmp_path / "other.joblib"
    not_a_model.write_bytes(b"not a model")

    runner = CliRunner()
    refused = runner.invoke(app, ["reports", "models", "import", str(not_a_model)])
    assert refused.exit_code == 2
    assert "not a report model file" in refused.output
    imported = runner.invoke(app, ["reports", "models", "import", str(path), "--promote"])
    assert imported.exit_code == 0, imported.output
    assert "stored as version 0001" in imported.output
    assert "version 0001 promoted" in imported.output
    listed = runner.invoke(app, ["reports", "models", "list"]).output.splitlines()
    assert listed[1].startswith("* 0001 ")
    assert "0.7712" in listed[1]
    assert "0.6100" in listed[1]

    database = Database(env)
    try:
        registry = ModelRegistry(database, open_store(f"file://{tmp_path / 'blobs'}"))
        assert registry.promoted_version() == "0001"
        [version] = registry.versions()
        assert (version.trained_on, version.held_back) == (len(records), 40)
        served = registry.load("0001")
        assert (served.score(records[:5]) == trained.score(records[:5])).all()
    finally:
        database.dispose()
