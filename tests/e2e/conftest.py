"""Fixtures of the end-to-end tests: real ``chorus serve`` processes under upload load.

What the servers run on is in ``tests/e2e/deployment.py``; the upload load and the census of
where its clips end up are in ``tests/e2e/load.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from chorus.devservers import provision_postgres_database
from core.db import Database
from tests.consent import ConsentKeys
from tests.e2e.deployment import SMALL_POLICY, ServerFactory, prepare_database
from tests.e2e.procs import ChorusProcess


@pytest.fixture(scope="session")
def fsdd_wavs(fsdd_dir: Path) -> list[bytes]:
    """About forty FSDD recordings (WAV, 8 kHz) long enough for the policy's minimum."""
    files = sorted(fsdd_dir.glob("*.wav"))
    files = files[:: max(1, len(files) // 40)]
    wavs = [path.read_bytes() for path in files if sf.info(path).duration >= 0.4]
    assert len(wavs) >= 20
    return wavs


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(SMALL_POLICY)
    return path


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    with provision_postgres_database(prefix="chorus_e2e") as url:
        yield url


@pytest.fixture
def e2e_database(fresh_postgres_url: str) -> Iterator[Database]:
    """The fresh database, migrated, with the catalog; its connections closed afterwards."""
    database = prepare_database(fresh_postgres_url)
    yield database
    database.dispose()


@pytest.fixture
def chorus_server(
    tmp_path: Path, consent_keys: ConsentKeys, policy_file: Path
) -> Iterator[ServerFactory]:
    """``chorus_server(database_url=…, storage_url=…, workers=1, **CHORUS_overrides)``: not yet
    started."""
    made: list[ChorusProcess] = []

    def factory(
        *, database_url: str, storage_url: str, workers: int = 1, **overrides: str
    ) -> ChorusProcess:
        index = len(made)
        env = {
            "CHORUS_DATABASE_URL": database_url,
            "CHORUS_STORAGE_URL": storage_url,
            "CHORUS_POLICY": str(policy_file),
            "CHORUS_CONSENT_PUBLIC_KEY": consent_keys.public_pem,
            "CHORUS_SCHEDULER_ENABLED": "false",
            "CHORUS_DECODER_WORKERS": "1",
            **{f"CHORUS_{name.upper()}": value for name, value in overrides.items()},
        }
        server = ChorusProcess(env, tmp_path / f"serve-{index}.log", workers=workers)
        made.append(server)
        return server

    yield factory
    for server in made:
        server.stop()
