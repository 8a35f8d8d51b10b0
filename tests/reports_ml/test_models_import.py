"""``chorus reports models import``: a model trained by ``chorus reports train`` becomes a
stored version of the review service, served once promoted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chorus.cli import app
from core.settings import reset_settings_cache
from reports_ml.model import card_path
from reports_ml.registry import ModelRegistry, ServingModel
from reports_ml.simulate import simulate_course
from reports_ml.staple import load_staple, write_records
from tests.datasets import STAPLE_DIR

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CHORUS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("CHORUS_MODEL_DIR", str(tmp_path / "models"))
    reset_settings_cache()
    yield tmp_path / "models"
    reset_settings_cache()


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    """A model file as ``chorus reports train`` writes it, with its card beside it."""
    records = simulate_course("en_pt", load_staple(STAPLE_DIR / "excerpt.en_pt.gold.txt")[:20],
                              seed=2)
    data = tmp_path / "reports.jsonl"
    with data.open("w", encoding="utf-8") as stream:
        write_records(records, stream)
    model = tmp_path / "trained" / "scorer.joblib"
    result = runner.invoke(app, ["reports", "train", str(data), "--model", str(model),
                                 "--holdout", "0.3", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert card_path(model).is_file()
    return model


def test_import_then_promote_serves_the_trained_model(env: Path, trained: Path) -> None:
    imported = runner.invoke(app, ["reports", "models", "import", str(trained)])
    assert imported.exit_code == 0, imported.output
    assert f"imported {trained} as version 0001 (simulated labels" in imported.output
    registry = ModelRegistry(env)
    (version,) = registry.versions()
    assert version.version == "0001"
    assert version.trained_on > 0
    assert version.auc is not None
    assert version.compared_with == "count"
    assert registry.promoted_version() is None  # stored, not served, until promoted
    assert (env / "versions" / "0001" / "model.json").is_file()  # the card came along

    again = runner.invoke(app, ["reports", "models", "import", str(trained), "--promote"])
    assert again.exit_code == 0, again.output
    assert "version 0002 promoted; 0 open reports rescored" in again.output
    assert registry.promoted_version() == "0002"
    listed = runner.invoke(app, ["reports", "models", "list"]).output
    assert "* 0002" in listed
    assert ServingModel(registry).current().version == "0002"


def test_import_refuses_a_file_that_is_not_a_model(env: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.joblib"
    bogus.write_bytes(b"not a model")
    result = runner.invoke(app, ["reports", "models", "import", str(bogus)])
    assert result.exit_code == 2
    assert "not a report model file" in result.output
    assert ModelRegistry(env).versions() == []
