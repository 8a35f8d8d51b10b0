"""``chorus release [--dry-run]`` and ``chorus releases list|show|download``."""

from __future__ import annotations

import errno
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from chorus.cli import app as chorus
from core.auth import Role
from core.db import Database
from core.settings import Settings, reset_settings_cache
from core.storage import TEMP_PREFIX, BlobStore, open_store
from ingest.audio import sanitize_audio
from ingest.service import audio_limits
from policies.policy import Policy, load_policy
from tests.aggregate.clips import SPEAKERS, FlacClip, Seed, seed_clip
from tests.aggregate.releases import audit_log, release_now, write_policy

runner = CliRunner()


@pytest.fixture
def cli_settings(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    settings = make_settings()
    monkeypatch.setenv("CHORUS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHORUS_STORAGE_URL", settings.storage_url)
    monkeypatch.setenv("CHORUS_POLICY", "demo")
    monkeypatch.setenv("CHORUS_CONSENT_PUBLIC_KEY", settings.consent_public_key or "")
    reset_settings_cache()
    yield settings
    reset_settings_cache()


def test_release_dry_run_changes_nothing_then_release_releases(
    cli_settings: Settings, seed: Seed
) -> None:
    database = Database(cli_settings.database_url)
    database.upgrade()
    store = open_store(cli_settings.storage_url)
    seed(database, store, digit=3)
    seed(database, store, digit=4, speakers=2)
    database.dispose()

    result = runner.invoke(chorus, ["release", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would release: 1 bucket(s)" in result.output
    assert "exercise digit-3 (open): 5 clip(s), 5 contributor(s)" in result.output
    assert "would purge: 0 bucket(s)" in result.output
    assert len(list(store.list("pending/"))) == 7
    assert list(store.list("releases/")) == []

    result = runner.invoke(chorus, ["release"])
    assert result.exit_code == 0, result.output
    assert "released: 1 batch(es)" in result.output
    assert "exercise digit-3: 5 clip(s), 5 contributor(s)" in result.output
    assert len(list(store.list("pending/"))) == 2  # digit-4 waits for k


@pytest.mark.parametrize(
    ("code", "message"),
    [(errno.ENOSPC, "no space left (ENOSPC)"), (errno.EROFS, "EROFS")],
)
def test_release_on_a_full_or_read_only_store_fails_in_one_line(
    cli_settings: Settings, seed: Seed, monkeypatch: pytest.MonkeyPatch, code: int, message: str
) -> None:
    database = Database(cli_settings.database_url)
    database.upgrade()
    store = open_store(cli_settings.storage_url)
    seed(database, store, digit=3)
    database.dispose()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if TEMP_PREFIX in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    result = runner.invoke(chorus, ["release"])
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(list(store.list("pending/"))) == 5  # the bucket waits for the next run
    result = runner.invoke(chorus, ["release"])
    assert result.exit_code == 0, result.output
    assert "released: 1 batch(es)" in result.output


def _seed_sanitized(
    database: Database, store: BlobStore, fsdd_dir: Path, policy: Policy, *, digit: int
) -> None:
    """Two learners' clips of ``digit-<digit>`` as the upload path stores them."""
    for speaker in SPEAKERS[:2]:
        clip = sanitize_audio(
            (fsdd_dir / f"{digit}_{speaker}_0.wav").read_bytes(), audio_limits(policy)
        )
        seed_clip(
            database,
            store,
            exercise_id=f"digit-{digit}",
            learner_id=f"learner-{speaker}",
            clip=FlacClip(
                speaker, clip.flac, clip.duration_s, clip.sample_rate, clip.loudness_dbfs
            ),
        )


def test_release_under_a_policy_file_records_that_policy_first(
    cli_settings: Settings, fsdd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy_path = write_policy(tmp_path, k=2)
    policy = load_policy(str(policy_path))
    policy_hash = policy.content_hash
    monkeypatch.setenv("CHORUS_POLICY", str(policy_path))
    database = Database(cli_settings.database_url)
    database.upgrade()
    store = open_store(cli_settings.storage_url)
    _seed_sanitized(database, store, fsdd_dir, policy, digit=3)

    result = runner.invoke(chorus, ["release", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert audit_log(database) == []  # a dry run changes nothing, not even the log

    result = runner.invoke(chorus, ["release"])
    assert result.exit_code == 0, result.output
    assert "exercise digit-3: 2 clip(s), 2 contributor(s)" in result.output
    kinds = [kind for kind, _ in audit_log(database)]
    assert kinds == ["policy_loaded", "release"]
    (_, loaded), (_, release) = audit_log(database)
    assert loaded["content_hash"] == policy_hash
    assert loaded["policy"]["k"] == 2
    assert release["policy_hash"] == policy_hash

    _seed_sanitized(database, store, fsdd_dir, policy, digit=4)
    result = runner.invoke(chorus, ["release"])
    assert result.exit_code == 0, result.output
    assert [kind for kind, _ in audit_log(database)] == ["policy_loaded", "release", "release"]
    database.dispose()

    reset_settings_cache()
    result = runner.invoke(chorus, ["audit", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["findings"] == []


@pytest.fixture
def released(app: FastAPI, client: TestClient, seed: Seed) -> str:
    seed(app.state.database, app.state.store, digit=9)
    return release_now(app).released[0].release_id


def test_releases_list_show_and_download(
    released: str, live_url: str, role_keys: dict[Role, str], tmp_path: Path
) -> None:
    key = ["--key", role_keys[Role.RESEARCHER]]
    result = runner.invoke(chorus, ["releases", "list", *key], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert released in result.output
    assert "digit-9" in result.output

    result = runner.invoke(chorus, ["releases", "show", released, *key])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["clip_count"] == 5
    assert "clips" not in shown

    out = tmp_path / "download"
    result = runner.invoke(chorus, ["releases", "download", released, "--out", str(out), *key])
    assert result.exit_code == 0, result.output
    assert "checksums verified" in result.output
    clips = sorted((out / "clips").glob("*.flac"))
    assert len(clips) == 5
    for path in clips:
        assert sf.info(path).samplerate > 0
    assert json.loads((out / "manifest.json").read_text())["release_id"] == released
    assert (out / "metadata.csv").read_text().count("\n") == 6

    result = runner.invoke(chorus, ["releases", "download", released, "--out", str(out), *key])
    assert result.exit_code == 2
    assert "not empty" in result.output

    result = runner.invoke(
        chorus, ["releases", "download", released, "--out", str(out), "--tar", *key]
    )
    assert result.exit_code == 0, result.output
    with tarfile.open(out / f"{released}.tar") as archive:
        # card, 4 tables, SHA256SUMS, manifest, 5 clips
        assert len(archive.getnames()) == 12


def test_releases_list_json_has_whole_ids(
    released: str, live_url: str, role_keys: dict[Role, str]
) -> None:
    key = ["--key", role_keys[Role.RESEARCHER]]
    result = runner.invoke(chorus, ["releases", "list", "--json", *key])
    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.output)
    assert item["release_id"] == released
    assert item["clip_count"] == 5
    # A narrow terminal wraps other columns, never the id a researcher copies.
    result = runner.invoke(chorus, ["releases", "list", *key], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    assert released in result.output


def test_releases_commands_report_problems_in_one_line(
    released: str, live_url: str, role_keys: dict[Role, str], tmp_path: Path
) -> None:
    result = runner.invoke(
        chorus, ["releases", "show", "f" * 32, "--key", role_keys[Role.RESEARCHER]]
    )
    assert result.exit_code == 2
    assert "not_found" in result.output
    result = runner.invoke(chorus, ["releases", "list", "--key", role_keys[Role.APP]])
    assert result.exit_code == 2
    assert "forbidden" in result.output
    assert io.StringIO(result.output).read().count("\n") == 1
