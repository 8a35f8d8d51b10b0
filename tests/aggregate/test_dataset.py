"""A release is a dataset: downloaded with ``chorus releases download`` it loads with Hugging
Face ``datasets`` (no builder named), one row per clip with its audio, text and language."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aggregate.dataset import member_header
from aggregate.models import ManifestRead
from chorus.cli import app as chorus
from core.auth import Role
from tests.aggregate.clips import Seed
from tests.aggregate.releases import release_now

runner = CliRunner()
CATALOG = {
    "exercise_id": "digit-7",
    "learners": 5000,
    "text": "Say the number seven.",
    "language": "en-US",
    "course": "numbers",
    "skill": "speaking",
}


def _release(app: FastAPI) -> str:
    (outcome,) = release_now(app).released
    return outcome.release_id


def _download(app: FastAPI, role_keys: dict[Role, str], out: Path) -> Path:
    """Release the seeded bucket and download it with the CLI, as a researcher would."""
    release_id = _release(app)
    result = runner.invoke(
        chorus,
        [
            "releases",
            "download",
            release_id,
            "--out",
            str(out),
            "--key",
            role_keys[Role.RESEARCHER],
        ],
    )
    assert result.exit_code == 0, result.output
    return out


REPO_ROOT = Path(__file__).resolve().parents[2]
# The other environments ``make test`` builds, each with the versions of a kind of researcher:
# (datasets major version, pandas major version) -> (variable overriding it, its interpreter).
# The suite's own environment is the third combination: datasets 3 under pandas 2.
OTHER_ENVIRONMENTS = {
    ("4", "3"): ("CHORUS_TEST_DATASETS4_PYTHON", ".venv-datasets"),  # requirements-datasets.txt
    ("3", "3"): ("CHORUS_TEST_DATASETS3_PYTHON", ".venv-datasets3"),  # requirements-datasets3.txt
}


def _interpreter(variable: str, venv: str) -> Path:
    return Path(os.environ.get(variable, REPO_ROOT / venv / "bin" / "python"))


def _samples(data: bytes) -> np.ndarray:
    samples, _rate = sf.read(io.BytesIO(data), dtype="float32")
    return np.asarray(samples)


# ``datasets`` leaves metadata.csv open (pandas' chunked reader); not this project's file.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_downloaded_release_loads_with_datasets(
    app: FastAPI,
    client: TestClient,
    seed: Seed,
    auth: Callable[[Role], dict[str, str]],
    live_url: str,
    role_keys: dict[Role, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = client.patch("/v1/exercises/usage", json=[CATALOG], headers=auth(Role.ADMIN))
    assert answer.status_code == 200, answer.text
    assert answer.json()["added"] == 1
    uploaded = seed(app.state.database, app.state.store, digit=7)
    out = _download(app, role_keys, tmp_path / "dataset")

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets
    import pandas

    # The combination this test stands for; the others run in their own environments below.
    assert (datasets.__version__[0], pandas.__version__[0]) == ("3", "2")

    loaded = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert loaded.num_rows == len(uploaded) == 5
    assert isinstance(loaded.features["audio"], datasets.Audio)
    assert {"text", "language", "exercise_id", "duration_s", "sample_rate"} <= set(
        loaded.column_names
    )
    expected = {
        hashlib.sha256(_samples(clip.data).tobytes()).hexdigest(): clip for clip in uploaded
    }
    seen = set()
    for row in loaded:
        audio = row["audio"]
        decoded = np.asarray(audio["array"], dtype="float32")
        digest = hashlib.sha256(decoded.tobytes()).hexdigest()
        assert digest in expected, "a row's audio is none of the uploaded clips"
        clip = expected[digest]
        assert audio["sampling_rate"] == clip.sample_rate == row["sample_rate"]
        assert row["duration_s"] == pytest.approx(clip.duration_s)
        assert row["text"] == CATALOG["text"]
        assert row["language"] == CATALOG["language"]
        assert row["exercise_id"] == "digit-7"
        seen.add(digest)
    assert seen == set(expected)

    # The Common Voice-style table and the card say the same.
    with (out / "validated.tsv").open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == 5
    assert {row["sentence"] for row in rows} == {CATALOG["text"]}
    assert {row["locale"] for row in rows} == {"en-US"}
    assert all((out / "clips" / row["path"]).is_file() for row in rows)
    # The JSON Lines metadata datasets reads holds the CSV's rows, and the card points to it.
    with (out / "metadata.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    lines = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [row["file_name"] for row in lines] == [row["file_name"] for row in table]
    assert [str(row["sample_rate"]) for row in lines] == [row["sample_rate"] for row in table]
    card = (out / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["configs"] == [
        {
            "config_name": "default",
            "data_files": [{"split": "train", "path": ["clips/*.flac", "metadata.jsonl"]}],
        }
    ]
    assert front["license"] == app.state.policy.release_license
    assert front["language"] == ["en-US"]
    assert front["size_categories"] == ["n<1K"]
    assert front["chorus"]["k"] == app.state.policy.k
    assert front["chorus"]["clip_count"] == 5
    assert "k distinct contributors" in front["chorus"]["anonymization"]
    assert os.access(out / "SHA256SUMS", os.R_OK)


def test_the_manifest_records_shards_files_and_checksums(
    app: FastAPI,
    client: TestClient,
    seed: Seed,
    auth: Callable[[Role], dict[str, str]],
) -> None:
    client.patch("/v1/exercises/usage", json=[CATALOG], headers=auth(Role.ADMIN))
    seed(app.state.database, app.state.store, digit=7)
    release_id = _release(app)
    researcher = auth(Role.RESEARCHER)
    manifest = client.get(f"/v1/releases/{release_id}", headers=researcher).json()
    documented = ManifestRead.model_validate(manifest)  # the published schema holds
    assert all(clip.sha256 and clip.shard and clip.size for clip in documented.clips)
    assert (manifest["text"], manifest["language"]) == (CATALOG["text"], "en-US")
    assert (manifest["course"], manifest["skill"]) == ("numbers", "speaking")
    for entry in [*manifest["shards"], *manifest["files"]]:
        url = f"/v1/releases/{release_id}/files/{entry['name']}"
        head = client.head(url, headers=researcher)
        assert head.status_code == 200
        assert int(head.headers["content-length"]) == entry["size"]
        assert head.headers["accept-ranges"] == "bytes"
        body = client.get(url, headers=researcher).content
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    for clip in manifest["clips"]:
        data = client.get(
            f"/v1/releases/{release_id}/clips/{clip['clip_id']}", headers=researcher
        ).content
        assert hashlib.sha256(data).hexdigest() == clip["sha256"]

    archive = f"/v1/releases/{release_id}/archive"
    whole = client.get(archive, headers=researcher).content
    head = client.head(archive, headers=researcher)
    assert int(head.headers["content-length"]) == len(whole)
    part = client.get(archive, headers={**researcher, "Range": "bytes=1000-4999"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-4999/{len(whole)}"
    assert part.content == whole[1000:5000]
    tail = client.get(archive, headers={**researcher, "Range": "bytes=-700"})
    assert tail.content == whole[-700:]
    beyond = client.get(archive, headers={**researcher, "Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416
    assert beyond.json()["code"] == "range_not_satisfiable"
    for name in ("../manifest.json", "pending/x.flac", "shards/shard-1.tar"):
        missing = client.get(f"/v1/releases/{release_id}/files/{name}", headers=researcher)
        assert missing.status_code == 404, name
    assert (
        json.loads(
            client.get(f"/v1/releases/{release_id}/files/manifest.json", headers=researcher).content
        )["release_id"]
        == release_id
    )


@pytest.mark.parametrize(
    ("datasets_major", "pandas_major"),
    sorted(OTHER_ENVIRONMENTS),
    ids=lambda major: major,
)
def test_a_downloaded_release_loads_with_other_datasets_and_pandas(
    app: FastAPI,
    client: TestClient,
    seed: Seed,
    role_keys: dict[Role, str],
    auth: Callable[[Role], dict[str, str]],
    live_url: str,
    tmp_path: Path,
    datasets_major: str,
    pandas_major: str,
) -> None:
    """datasets 4 decodes audio through torchcodec and FFmpeg, not soundfile; datasets 3 under
    pandas 3 would read metadata.csv's names as large_string and refuse them: the same folder
    loads in both, in the environments ``make test`` builds for them."""
    variable, venv = OTHER_ENVIRONMENTS[(datasets_major, pandas_major)]
    python = _interpreter(variable, venv)
    assert python.exists(), f"{python} is missing: `make test` builds it (or set {variable})"
    client.patch("/v1/exercises/usage", json=[CATALOG], headers=auth(Role.ADMIN))
    uploaded = seed(app.state.database, app.state.store, digit=7)
    out = _download(app, role_keys, tmp_path / "dataset")

    loaded = subprocess.run(
        [
            str(python),
            str(Path(__file__).with_name("load_with_datasets.py")),
            str(out),
            str(tmp_path / "hf"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    header, *rows = (json.loads(line) for line in loaded.stdout.splitlines())
    assert header["datasets"].startswith(f"{datasets_major}.")
    assert header["pandas"].startswith(f"{pandas_major}.")
    assert header["audio_feature"] == "Audio"
    assert header["rows"] == len(rows) == len(uploaded) == 5
    expected = {}
    for clip in uploaded:
        pcm, _rate = sf.read(io.BytesIO(clip.data), dtype="int16")
        expected[hashlib.sha256(np.asarray(pcm).tobytes()).hexdigest()] = clip
    assert {row["pcm_sha256"] for row in rows} == set(expected)
    for row in rows:
        clip = expected[row["pcm_sha256"]]
        assert row["sampling_rate"] == row["sample_rate"] == clip.sample_rate
        assert row["duration_s"] == pytest.approx(clip.duration_s)
        assert row["text"] == CATALOG["text"]
        assert row["language"] == CATALOG["language"]
        assert row["exercise_id"] == "digit-7"


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("clips/" + "a" * 32 + ".flac", 17_000),
        ("clips/ü.flac", 0),
        ("x" * 100, 512),  # the longest name the name field holds
        ("d" * 60 + "/" + "x" * 60, 1),  # longer: tarfile splits it into prefix and name
        ("clips/big.flac", 8**11 - 1),  # the largest size of 11 octal digits
    ],
)
def test_a_shard_member_header_is_tarfiles_ustar_header(name: str, size: int) -> None:
    mtime = 1_764_460_800
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    expected = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    assert member_header(name, size, mtime) == expected
    parsed = tarfile.TarInfo.frombuf(member_header(name, size, mtime), "utf-8", "strict")
    assert (parsed.name, parsed.size, parsed.mtime) == (name, size, mtime)
