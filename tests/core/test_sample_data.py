"""One lookup for the sample data: CHORUS_DATA_DIR, then ../shared/data, then tests/data."""

from __future__ import annotations

from pathlib import Path

from core.sample_data import find_sample_data, full_sample_data


def _full(folder: Path, *gold: str) -> Path:
    (folder / "fsdd" / "recordings").mkdir(parents=True)
    (folder / "fsdd" / "recordings" / "0_george_0.wav").write_bytes(b"RIFF")
    (folder / "staple").mkdir()
    for name in gold:
        (folder / "staple" / name).write_text("prompt|1\n")
    return folder


def _repo_with_fixtures(root: Path) -> Path:
    repo = root / "chorus"
    (repo / "tests" / "data" / "fsdd").mkdir(parents=True)
    (repo / "tests" / "data" / "fsdd" / "7_jackson_32.wav").write_bytes(b"RIFF")
    (repo / "tests" / "data" / "staple").mkdir()
    (repo / "tests" / "data" / "staple" / "excerpt.en_hu.gold.txt").write_text("p|1\n")
    return repo


def test_a_bare_clone_finds_its_fixtures_and_says_they_are_not_the_whole_sets(
    tmp_path: Path,
) -> None:
    repo = _repo_with_fixtures(tmp_path)
    found = find_sample_data(environ={}, repo_root=repo)
    assert found is not None
    assert found.fsdd == repo / "tests" / "data" / "fsdd"
    assert not found.complete
    staple = repo / "tests" / "data" / "staple"
    assert found.staple_file("en_hu") == staple / "excerpt.en_hu.gold.txt"
    assert "fixtures" in found.describe()
    assert full_sample_data(environ={}, repo_root=repo) is None


def test_shared_data_beside_the_repository_comes_before_the_fixtures(tmp_path: Path) -> None:
    repo = _repo_with_fixtures(tmp_path)
    shared = _full(tmp_path / "shared" / "data", "test.en_hu.gold.txt", "dev.en_hu.gold.txt")
    found = find_sample_data(environ={}, repo_root=repo)
    assert found is not None
    assert found.complete
    assert found.fsdd == shared / "fsdd" / "recordings"
    assert found.staple_file("en_hu") == shared / "staple" / "dev.en_hu.gold.txt"
    assert found.staple_file("en_vi") is None


def test_chorus_data_dir_comes_first_and_an_empty_one_is_passed_over(tmp_path: Path) -> None:
    repo = _repo_with_fixtures(tmp_path)
    _full(tmp_path / "shared" / "data")
    chosen = _full(tmp_path / "elsewhere")
    found = find_sample_data(environ={"CHORUS_DATA_DIR": str(chosen)}, repo_root=repo)
    assert found is not None
    assert found.root == chosen
    empty = tmp_path / "empty"
    empty.mkdir()
    found = find_sample_data(environ={"CHORUS_DATA_DIR": str(empty)}, repo_root=repo)
    assert found is not None
    assert found.root == tmp_path / "shared" / "data"


def test_an_installed_copy_without_data_finds_none(tmp_path: Path) -> None:
    assert find_sample_data(environ={}, repo_root=tmp_path / "site-packages") is None
