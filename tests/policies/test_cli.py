"""``chorus audio anonymize``: the release's transform over a folder, reproducible by seed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from chorus.cli import app
from policies import flac
from policies.voice import decode_mono

runner = CliRunner()
STEMS = ("0_george_0", "1_jackson_0", "2_theo_0")


def _sources(fsdd_dir: Path, folder: Path) -> Path:
    folder.mkdir()
    for stem in STEMS:
        shutil.copy(fsdd_dir / f"{stem}.wav", folder / f"{stem}.wav")
    # A FLAC source as well, and a file that is not audio by its name.
    wav, rate = decode_mono((fsdd_dir / "3_lucas_0.wav").read_bytes())
    (folder / "3_lucas_0.flac").write_bytes(flac.encode_samples(wav, rate))
    (folder / "notes.txt").write_text("not a clip", encoding="utf-8")
    return folder


def _policy(tmp_path: Path, method: str) -> Path:
    path = tmp_path / f"{method}.toml"
    path.write_text(
        f'name = "{method}"\nversion = 1\nvoice_anonymization = "{method}"\n', encoding="utf-8"
    )
    return path


def _anonymize(src: Path, out: Path, policy: Path, *extra: str) -> None:
    result = runner.invoke(
        app, ["audio", "anonymize", str(src), "--out", str(out), "--policy", str(policy), *extra]
    )
    assert result.exit_code == 0, result.output
    assert "anonymized 4 clip(s)" in result.output


def test_every_clip_is_transformed_into_canonical_flac_and_a_seed_reproduces(
    tmp_path: Path, fsdd_dir: Path
) -> None:
    src = _sources(fsdd_dir, tmp_path / "src")
    policy = _policy(tmp_path, "mcadams")
    _anonymize(src, tmp_path / "a", policy, "--seed", "5")
    _anonymize(src, tmp_path / "b", policy, "--seed", "5")
    _anonymize(src, tmp_path / "c", policy)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted([*(f"{s}.flac" for s in STEMS), "3_lucas_0.flac"])
    for name in names:
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes()
        assert data != (tmp_path / "c" / name).read_bytes()
        decoded = flac.decode(data, sample_rate=8000)
        assert decoded.problems == []
        assert flac.canonical_differences(data, flac.encode_canonical(decoded.pcm, 8000)) == []
        source = src / name.replace(".flac", ".wav")
        original, _ = decode_mono((source if source.exists() else src / name).read_bytes())
        assert len(decoded.pcm) == len(original)
        assert not np.allclose(decoded.pcm / 32767.0, original, atol=1e-2)


def test_a_policy_without_anonymization_is_refused(tmp_path: Path, fsdd_dir: Path) -> None:
    src = _sources(fsdd_dir, tmp_path / "src")
    result = runner.invoke(
        app, ["audio", "anonymize", str(src), "--out", str(tmp_path / "o"), "--policy", "default"]
    )
    assert result.exit_code == 2
    assert "does not anonymize voices" in result.output
    assert not (tmp_path / "o").exists()


def test_a_missing_folder_and_a_broken_clip_fail_cleanly(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "mcadams")
    missing = runner.invoke(
        app,
        [
            "audio",
            "anonymize",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
            "--policy",
            str(policy),
        ],
    )
    assert missing.exit_code == 2
    assert "is not a folder" in missing.output
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.wav").write_bytes(b"RIFF nonsense")
    broken = runner.invoke(
        app,
        [
            "audio",
            "anonymize",
            str(tmp_path / "src"),
            "--out",
            str(tmp_path / "o"),
            "--policy",
            str(policy),
        ],
    )
    assert broken.exit_code == 2
    assert "bad.wav: the clip does not decode as audio" in broken.output


def test_a_retiming_policy_gives_the_folder_one_duration_as_a_release_does(
    tmp_path: Path, fsdd_dir: Path
) -> None:
    src = _sources(fsdd_dir, tmp_path / "src")
    policy = tmp_path / "averaged.toml"
    policy.write_text(
        'name = "averaged"\nversion = 1\nvoice_anonymization = "pseudo_voice"\n'
        'voice_pseudo_timing = "anchored"\nvoice_pseudo_averaging = 0.9\n',
        encoding="utf-8",
    )
    _anonymize(src, tmp_path / "a", policy, "--seed", "3")
    sources = [p for p in src.iterdir() if p.suffix in (".wav", ".flac")]
    durations = []
    for source in sources:
        samples, rate = decode_mono(source.read_bytes())
        durations.append(len(samples) / rate)
    assert len(set(durations)) > 1
    released = {flac.duration_s(p.read_bytes()) for p in (tmp_path / "a").iterdir()}
    assert len(released) == 1
    assert released.pop() == pytest.approx(float(np.median(durations)), abs=1e-3)
