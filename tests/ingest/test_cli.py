"""``chorus consent keygen|mint`` and ``chorus exercises import``."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chorus.cli import app
from core.settings import reset_settings_cache
from ingest.consent import load_public_key, verify_consent
from policies.policy import load_policy

runner = CliRunner()
DEMO = load_policy("demo")


def test_keygen_then_mint_gives_a_token_the_service_accepts(tmp_path: Path) -> None:
    result = runner.invoke(app, ["consent", "keygen", "--out", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    private = tmp_path / "keys" / "private.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    minted = runner.invoke(
        app,
        ["consent", "mint", "--learner", "L1", "--age", "20", "--key", str(private), "--ttl", "60"],
    )
    assert minted.exit_code == 0, minted.output
    public_key = load_public_key(str(tmp_path / "keys" / "public.pem"))
    assert public_key is not None
    consent = verify_consent(minted.output.strip(), public_key=public_key, policy=DEMO)
    assert (consent.learner_id, consent.age, consent.child) == ("L1", 20, False)
    again = runner.invoke(app, ["consent", "keygen", "--out", str(tmp_path / "keys")])
    assert again.exit_code == 2


def test_mint_child_flag_and_missing_key(tmp_path: Path) -> None:
    runner.invoke(app, ["consent", "keygen", "--out", str(tmp_path)])
    key = str(tmp_path / "private.pem")
    minted = runner.invoke(app, ["consent", "mint", "--learner", "c", "--child", "--key", key])
    public_key = load_public_key(str(tmp_path / "public.pem"))
    assert public_key is not None
    consent = verify_consent(minted.output.strip(), public_key=public_key, policy=DEMO)
    assert consent.child
    assert consent.age is None
    no_key = str(tmp_path / "x")
    missing = runner.invoke(app, ["consent", "mint", "--learner", "c", "--key", no_key])
    assert missing.exit_code == 2


def test_keygen_and_mint_default_to_the_pair_make_run_serves_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["consent", "keygen"]).exit_code == 0
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "CHORUS_CONSENT_PUBLIC_KEY=$(DEV_KEYS)/public.pem" in makefile
    assert "DEV_KEYS := var/keys" in makefile
    minted = runner.invoke(app, ["consent", "mint", "--learner", "L2", "--age", "30"])
    assert minted.exit_code == 0, minted.output
    public_key = load_public_key(str(tmp_path / "var" / "keys" / "public.pem"))
    assert public_key is not None
    assert verify_consent(minted.output.strip(), public_key=public_key, policy=DEMO).age == 30


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    database = tmp_path / "cli.db"
    monkeypatch.setenv("CHORUS_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("CHORUS_POLICY", "demo")
    reset_settings_cache()
    yield database
    reset_settings_cache()


def test_exercises_import_replaces_the_catalog(tmp_path: Path, cli_env: Path) -> None:
    from core.db import Database
    from exercises.tables import ExerciseUsage

    csv_path = tmp_path / "usage.csv"
    csv_path.write_text("exercise_id,learners,language\ndigit-1,500,en\ndigit-2,20,\n")
    result = runner.invoke(app, ["exercises", "import", str(csv_path)])
    assert result.exit_code == 0, result.output
    assert "2 exercises, 1 with at least 100 learners" in result.output
    database = Database(f"sqlite:///{cli_env}")
    with database.session() as session:
        rows = {r.exercise_id: (r.learners, r.language) for r in session.query(ExerciseUsage)}
    database.dispose()
    assert rows == {"digit-1": (500, "en"), "digit-2": (20, None)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("exercise,learners\na,1\n", "missing column"),
        ("exercise_id,learners\na,many\n", "line 2"),
        ("exercise_id,learners\na,1\na,2\n", "twice"),
    ],
)
def test_exercises_import_refuses_bad_files(
    text: str, message: str, tmp_path: Path, cli_env: Path
) -> None:
    csv_path = tmp_path / "usage.csv"
    csv_path.write_text(text)
    result = runner.invoke(app, ["exercises", "import", str(csv_path)])
    assert result.exit_code == 2
    assert message in result.output
