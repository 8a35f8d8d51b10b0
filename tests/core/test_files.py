"""Temporary files of the service: in its own 0700 folder, and never visible by name."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path

import pytest

from core.errors import ConfigurationError
from core.files import (
    LEGACY_MIN_AGE_S,
    anonymous_file,
    anonymous_text_file,
    private_temp_dir,
    sweep_legacy_temporary_files,
)


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_anonymous_files_leave_no_name_while_open_or_after(temp_root: Path) -> None:
    folder = private_temp_dir()
    assert folder.parent == temp_root
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with anonymous_file() as audio, anonymous_text_file() as table:
        audio.write(b"RIFF" * 1000)
        table.write("clip,sha256\n")
        audio.flush()
        table.flush()
        assert stat.S_IMODE(os.fstat(audio.fileno()).st_mode) == 0o600
        assert list(folder.iterdir()) == []
    assert list(folder.iterdir()) == []


def test_a_folder_open_to_others_is_narrowed_and_a_link_is_refused(temp_root: Path) -> None:
    folder = private_temp_dir()
    folder.chmod(0o777)
    assert stat.S_IMODE(private_temp_dir().stat().st_mode) == 0o700
    folder.rmdir()
    elsewhere = temp_root / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    folder.symlink_to(elsewhere)
    with pytest.raises(ConfigurationError, match="not a folder of this user"):
        private_temp_dir()


def test_named_release_files_of_earlier_versions_are_swept(temp_root: Path) -> None:
    tmp_path = temp_root
    old, recent = time.time() - 2 * LEGACY_MIN_AGE_S, time.time()
    shard = tmp_path / "chorus-shard-abc.tar"
    shard.write_bytes(b"audio of a bucket never released")
    tables = tmp_path / "chorus-release-xyz"
    tables.mkdir()
    (tables / "metadata.csv").write_text("file_name\n")
    running = tmp_path / "chorus-shard-running.tar"
    running.write_bytes(b"a release of an older version still at work")
    unrelated = tmp_path / "other-shard.tar"
    unrelated.write_bytes(b"not ours")
    for path in (shard, tables, unrelated):
        os.utime(path, (old, old))
    os.utime(running, (recent, recent))

    assert sweep_legacy_temporary_files() == 2

    assert not shard.exists()
    assert not tables.exists()
    assert running.exists()
    assert unrelated.exists()
