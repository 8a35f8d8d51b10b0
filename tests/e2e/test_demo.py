"""``chorus demo`` from nothing: real server on loopback, real FSDD clips (or synthesized ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from chorus.cli import app as cli_app
from chorus.demo import DemoOutcome, run_demo, synthesized_wav
from reports_ml.staple import load_staple
from tests.datasets import FIXTURES, FSDD_FIXTURES, STAPLE_DIR

pytestmark = pytest.mark.e2e

EXPECTED_REFUSALS = {
    "a child's recording": (403, "minor"),
    "a rare exercise": (422, "exercise_not_eligible"),
    "a forged consent token": (401, "consent_invalid"),
    "a second clip for the same bucket": (409, "contribution_limit"),
}
K = 5
STAPLE_HU = STAPLE_DIR / "excerpt.en_hu.gold.txt"


def _assert_tour_succeeded(outcome: DemoOutcome) -> None:
    assert outcome.releases, "no batch was released"
    assert all(release["contributor_count"] >= K for release in outcome.releases)
    released = {release["exercise_id"] for release in outcome.releases}
    # Digits 0–4 are recorded by all six learners; the others by three, below k.
    assert released == {f"digit-{d}" for d in range(5)}
    refusals = {r.what: (r.status, r.code) for r in outcome.refusals}
    assert refusals == EXPECTED_REFUSALS
    assert outcome.audit_ok
    assert outcome.audit_checks >= 9
    assert outcome.downloaded_clips >= K
    assert outcome.queue, "the review queue is empty"
    top = outcome.queue[0]
    assert top["times_reported"] == 3  # the answer three learners sent ranks first
    assert [item["score"] for item in outcome.queue] == sorted(
        (item["score"] for item in outcome.queue), reverse=True
    )


def test_demo_on_fsdd_releases_refuses_audits_and_ranks(tmp_path: Path, fsdd_dir: Path) -> None:
    lines: list[str] = []
    outcome = run_demo(
        folder=tmp_path / "demo",
        fsdd=fsdd_dir.parent,
        staple=STAPLE_HU,
        echo=lines.append,
    )

    assert outcome.audio_source == "fsdd"
    _assert_tour_succeeded(outcome)
    assert outcome.course_prompts == len(load_staple(STAPLE_HU))
    assert outcome.seconds < 60
    # The researcher's download is a real batch: manifest and the service's own FLAC clips.
    batch = tmp_path / "demo" / "downloads" / str(outcome.downloaded_release)
    manifest = json.loads(next(batch.rglob("manifest.json")).read_text())
    clips = sorted(batch.rglob("*.flac"))
    assert len(clips) == manifest["clip_count"] == outcome.downloaded_clips
    info = sf.info(str(clips[0]))
    assert (info.format, info.samplerate, info.channels) == ("FLAC", 16000, 1)
    # Role keys are written once, private to the user; the output says where to look.
    role_keys = tmp_path / "demo" / "keys" / "role-keys.txt"
    assert role_keys.stat().st_mode & 0o077 == 0
    assert set(outcome.role_keys) == {"app", "researcher", "auditor", "contributor", "admin"}
    text = "\n".join(lines)
    for expected in (
        "403 minor",
        "422 exercise_not_eligible",
        "401 consent_invalid",
        "audit: clean",
        "/review",
        "chorus audit",
        str(role_keys),
    ):
        assert expected in text


def test_demo_runs_its_whole_tour_on_the_repositorys_fixtures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bare clone: only tests/data (two recordings a speaker, STAPLE excerpts) to go on.
    monkeypatch.setenv("CHORUS_DATA_DIR", str(FIXTURES))
    lines: list[str] = []
    served: list[str] = []
    outcome = run_demo(
        folder=tmp_path / "demo",
        echo=lines.append,
        keep_running=lambda server: served.append(server.url),
    )

    assert outcome.audio_source == "fsdd"
    _assert_tour_succeeded(outcome)
    assert outcome.course_prompts == len(load_staple(STAPLE_HU))
    text = "\n".join(lines)
    assert str(FSDD_FIXTURES) in text
    # The hints name the port the demo server actually listens on.
    assert served == [outcome.base_url]
    assert f"{outcome.base_url}/review" in text
    assert ":8000" not in text


def test_demo_hints_name_chorus_serves_port_once_the_tour_is_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHORUS_DATA_DIR", str(FIXTURES))
    lines: list[str] = []
    outcome = run_demo(folder=tmp_path / "demo", echo=lines.append)
    hints = "\n".join(lines[next(i for i, line in enumerate(lines) if "look next" in line) :])
    assert "http://127.0.0.1:8000/review" in hints
    assert "chorus serve" in hints
    assert outcome.base_url not in hints


def test_demo_synthesizes_audio_when_fsdd_is_absent(tmp_path: Path) -> None:
    lines: list[str] = []
    outcome = run_demo(
        folder=tmp_path / "demo",
        fsdd=tmp_path / "no-such-fsdd",
        staple=STAPLE_HU,
        echo=lines.append,
    )

    assert outcome.audio_source == "synthesized"
    assert any("synthesizing" in line for line in lines)
    _assert_tour_succeeded(outcome)
    flac = next((tmp_path / "demo" / "downloads").rglob("*.flac"))
    assert flac.read_bytes()[:4] == b"fLaC"


def test_synthesized_clips_differ_by_learner_and_exercise() -> None:
    clips = {synthesized_wav(speaker, digit) for speaker in range(6) for digit in range(10)}
    assert len(clips) == 60


def test_demo_command_refuses_to_overwrite_a_previous_demo(tmp_path: Path) -> None:
    (tmp_path / "chorus.db").write_bytes(b"")
    result = CliRunner().invoke(cli_app, ["demo", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--reset" in result.output
    assert (tmp_path / "chorus.db").exists()
