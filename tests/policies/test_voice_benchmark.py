"""The voice-privacy benchmark: its metrics against slow references, and its small mode."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.voice_privacy import (
    QUICK_SWEEP,
    SWEEP,
    Clip,
    attack,
    compose_releases,
    eer_score,
    fsdd_folder,
    load_fsdd,
    markdown,
    plot,
    release_linkage,
    run,
)
from core.sample_data import find_sample_data
from tests.datasets import FSDD_FIXTURES

HAS_VOICE_EXTRA = all(
    importlib.util.find_spec(name) is not None for name in ("resemblyzer", "pocketsphinx")
)


def _slow_eer(target: np.ndarray, nontarget: np.ndarray) -> float:
    """Scan every threshold; the EER is where the two error rates are closest (their mean)."""
    best = (2.0, 0.0)
    for threshold in np.concatenate([target, nontarget, [np.inf]]):
        false_accept = float(np.mean(nontarget >= threshold))
        false_reject = float(np.mean(target < threshold))
        gap = abs(false_accept - false_reject)
        if gap < best[0]:
            best = (gap, (false_accept + false_reject) / 2)
    return best[1]


def test_eer_matches_a_threshold_scan_on_a_seeded_toy_set() -> None:
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.5, 1.0, 3.0):
        target = rng.normal(shift, 1.0, 400)
        nontarget = rng.normal(0.0, 1.0, 2000)
        assert eer_score(target, nontarget) == pytest.approx(
            _slow_eer(target, nontarget), abs=0.005
        )
    assert eer_score(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert eer_score(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == pytest.approx(1.0)


def test_attack_counts_identification_and_target_trials() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6]])
    result = attack(scores, ["a", "b", "b"], ["a", "b"])
    assert result.identification_accuracy == pytest.approx(2 / 3)
    assert 0.0 < result.eer < 0.5


def _toy_clips(per_speaker: int) -> list[Clip]:
    return [
        Clip(digit=i % 10, speaker=f"s{s}", index=i, flac=b"")
        for s in range(6)
        for i in range(per_speaker)
    ]


def test_releases_hold_one_digit_and_k_speakers_where_six_allow_and_every_clip_once() -> None:
    clips = _toy_clips(50)  # five clips of each digit per speaker: 30 a digit
    for k in (5, 20):
        releases = compose_releases(clips, k, seed=1)
        assert sorted(i for release in releases for i in release) == list(range(len(clips)))
        assert all(len({clips[i].digit for i in release}) == 1 for release in releases)
        full = [release for release in releases if len(release) == k]
        assert len(full) == (60 if k == 5 else 10)
        for release in full:
            counts = [sum(clips[i].speaker == f"s{s}" for i in release) for s in range(6)]
            if k == 5:
                assert sorted(counts) == [0, 1, 1, 1, 1, 1]
            else:
                assert sorted(counts) == [3, 3, 3, 3, 4, 4]
    # Mixed words: releases ignore the digit, so most hold several.
    mixed = compose_releases(clips, 5, seed=2, mixed_words=True)
    assert np.mean([len({clips[i].digit for i in r}) > 1 for r in mixed]) > 0.5


def test_linkage_counts_the_same_speaker_across_consecutive_releases() -> None:
    speakers = ["a", "b", "c", "a", "b", "d"]
    releases = [[0, 1, 2], [3, 4, 5]]
    identity = np.eye(4)[[0, 1, 2, 0, 1, 3]]
    perfect = release_linkage(identity, speakers, releases)
    assert perfect.accuracy == 1.0
    assert perfect.chance == pytest.approx(1 / 3)
    swapped = np.eye(4)[[0, 1, 2, 1, 0, 3]]
    assert release_linkage(swapped, speakers, releases).accuracy == 0.0


NEEDS_VOICE_EXTRA = pytest.mark.skipif(
    not HAS_VOICE_EXTRA, reason="needs the voice extra (pip install '.[voice]')"
)


@NEEDS_VOICE_EXTRA
def test_small_mode_on_the_fixtures_shows_anonymization_raising_the_attackers_error(
    tmp_path: Path,
) -> None:
    # The twelve real recordings in tests/data: one enrollment and one trial clip per speaker.
    clips = load_fsdd(FSDD_FIXTURES, per_speaker=8)
    assert len(clips) == 12
    assert sum(clip.enrollment for clip in clips) == 6
    report = run(clips, {k: SWEEP[k] for k in QUICK_SWEEP}, jobs=1, progress=lambda _: None)
    assert report.speakers == 6
    assert report.original.eer < 0.25
    # Six trials: chance is 1/6; one more miss moves the accuracy by 1/6.
    assert report.original.identification_accuracy >= 0.5
    for point in report.points:
        assert point.ignorant.eer > report.original.eer + 0.1
        assert point.ignorant.identification_accuracy < report.original.identification_accuracy
        assert 0.0 <= point.word_accuracy <= 1.0
    assert 0.5 < report.original_word_accuracy <= 1.0
    text = markdown(report, command="voice_privacy.py --quick", load="0 / 0")
    assert all(label in text for label in QUICK_SWEEP)
    plot(report, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")


def test_the_benchmark_reads_the_data_core_sample_data_finds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Nothing beside the repository and no CHORUS_DATA_DIR: the fixtures, not an empty folder.
    monkeypatch.setenv("CHORUS_DATA_DIR", str(tmp_path / "nothing-here"))
    found = find_sample_data(repo_root=tmp_path / "bare" / "chorus")
    assert found is None
    assert any(fsdd_folder().glob("*.wav"))
    bare = tmp_path / "bare" / "chorus"
    shutil.copytree(FSDD_FIXTURES, bare / "tests" / "data" / "fsdd")
    found = find_sample_data(repo_root=bare)
    assert found is not None
    assert not found.complete
    assert len(list(found.fsdd.glob("*.wav"))) == 12
    # CHORUS_DATA_DIR laid out as the full data wins over the fixtures.
    full = tmp_path / "full"
    shutil.copytree(FSDD_FIXTURES, full / "fsdd" / "recordings")
    (full / "staple").mkdir()
    monkeypatch.setenv("CHORUS_DATA_DIR", str(full))
    found = find_sample_data(repo_root=bare)
    assert found is not None
    assert found.complete
    assert found.fsdd == full / "fsdd" / "recordings"
    assert fsdd_folder() == full / "fsdd" / "recordings"


@NEEDS_VOICE_EXTRA
@pytest.mark.full_data
def test_small_mode_on_the_full_data_shows_anonymization_raising_the_attackers_error(
    full_data: Path,
) -> None:
    # Twenty a speaker: releases are one digit each, and fewer clips leave them too small.
    clips = load_fsdd(full_data / "fsdd" / "recordings", per_speaker=20)
    assert len(clips) == 120
    report = run(
        clips,
        {label: SWEEP[label] for label in QUICK_SWEEP},
        sizes=(5,),
        jobs=1,
        progress=lambda _: None,
    )
    assert report.speakers == 6
    assert report.original.eer < 0.25
    assert report.original.identification_accuracy > 0.8
    assert report.original_linkage[5].accuracy > 0.6
    for point in report.points:
        assert point.k == 5
        assert point.ignorant.eer > report.original.eer + 0.1
        assert point.ignorant.identification_accuracy < report.original.identification_accuracy
    assert 0.4 < report.original_word_accuracy <= 1.0
    # The release's one pseudo-voice: a trained attacker does worse than on any per-clip draw.
    by_label = {point.label: point for point in report.points}
    assert by_label["pseudo-voice"].trained.eer > by_label["mcadams 0.7–0.9"].trained.eer
