"""One development consent key pair: what ``chorus consent keygen`` writes is what the local
steps of infra/README.md and ``run-scaled.sh`` serve with (``make run`` and ``consent mint``:
tests/ingest/test_cli.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chorus.cli import app

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dev_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["consent", "keygen"])
    assert result.exit_code == 0, result.output
    return tmp_path


def test_infra_readme_serves_with_the_key_keygen_writes(dev_keys: Path) -> None:
    readme = (REPO_ROOT / "infra" / "README.md").read_text()
    assert ".venv/bin/chorus consent keygen" in readme
    named = re.findall(r"CHORUS_CONSENT_PUBLIC_KEY=\$PWD/(\S+)", readme)
    assert named
    for path in named:
        assert (dev_keys / path).is_file(), path


def test_run_scaled_makes_and_serves_the_same_pair(dev_keys: Path) -> None:
    script = (REPO_ROOT / "infra" / "local" / "run-scaled.sh").read_text()
    assert '"$chorus" consent keygen --out ./var/keys' in script
    assert "Ed25519PrivateKey" not in script  # no key pair of its own
    served = re.findall(r'CHORUS_CONSENT_PUBLIC_KEY="\$\(pwd\)/(\S+)"', script)
    assert served == ["var/keys/public.pem"]
    assert (dev_keys / served[0]).is_file()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(("arguments", "port"), [((), "8000"), (("PORT=8123",), "8123")])
def test_make_run_serves_on_the_port_given_with_the_dev_pair(
    arguments: tuple[str, ...], port: str
) -> None:
    planned = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), "run", *arguments],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.splitlines()
    serve = [line for line in planned if line.endswith("chorus serve")]
    assert serve == [
        f"CHORUS_CONSENT_PUBLIC_KEY=var/keys/public.pem CHORUS_PORT={port} .venv/bin/chorus serve"
    ]
