"""Shared fixtures: the application on the embedded default, role keys, consent keys, data.

Sections: paths and data · consent keys · application and clients · servers (SeaweedFS,
PostgreSQL).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chorus.app import create_app
from chorus.devservers import SeaweedServer, provision_postgres_database
from core.auth import Role, create_key
from core.settings import Settings, reset_settings_cache
from core.storage import BlobStore, FileBlobStore, open_store
from tests.consent import ConsentKeys
from tests.datasets import FULL_DATA_HINT, build_mini_fsdd, full_data_dir
from tests.keys import TEST_KEY_STORE_FOLDER, TEST_KEY_STORE_URL

# --- paths and data ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def full_data() -> Path:
    """The full FSDD and STAPLE data (``CHORUS_DATA_DIR``); tests using it are ``full_data``."""
    folder = full_data_dir()
    if folder is None:
        pytest.skip(f"needs the full FSDD and STAPLE data: {FULL_DATA_HINT}")
    return folder


@pytest.fixture(scope="session")
def fsdd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A miniature FSDD built from the fixtures (see tests/datasets.py): every name for 10 takes."""
    return build_mini_fsdd(tmp_path_factory.mktemp("fsdd"))


@pytest.fixture(scope="session", autouse=True)
def _test_key_store() -> Iterator[None]:
    """Bucket keys of the whole run in one tmpfs folder, removed at the end (see tests/keys.py)."""
    previous = os.environ.get("CHORUS_KEY_STORE_URL")
    os.environ["CHORUS_KEY_STORE_URL"] = TEST_KEY_STORE_URL
    yield
    if previous is None:
        os.environ.pop("CHORUS_KEY_STORE_URL", None)
    else:
        os.environ["CHORUS_KEY_STORE_URL"] = previous
    shutil.rmtree(TEST_KEY_STORE_FOLDER, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_settings_cache() -> Iterator[None]:
    """Settings read from the environment are re-read in every test."""
    reset_settings_cache()
    yield
    reset_settings_cache()


# --- consent keys --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def consent_keys() -> ConsentKeys:
    """One consent key pair for the whole session (see tests/consent.py)."""
    return ConsentKeys()


# --- application and clients ---------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path, consent_keys: ConsentKeys) -> Callable[..., Settings]:
    """Settings on the embedded default under ``tmp_path``; keyword arguments override."""

    def factory(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": f"sqlite:///{tmp_path / 'chorus.db'}",
            "storage_url": f"file://{tmp_path / 'blobs'}",
            "policy": "demo",
            "consent_public_key": consent_keys.public_pem,
            "scheduler_enabled": False,
            "key_store_url": TEST_KEY_STORE_URL,
        }
        values.update(overrides)
        return Settings.model_validate(values)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client of the running app (lifespan entered: schema migrated)."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def role_keys(client: TestClient, app: FastAPI) -> dict[Role, str]:
    """One API key per role, created in the app's database."""
    with app.state.database.session() as session:
        return {role: create_key(session, role=role, name=f"test {role.value}") for role in Role}


@pytest.fixture
def auth(role_keys: dict[Role, str]) -> Callable[[Role], dict[str, str]]:
    """Headers carrying the key of a role: ``client.get(url, headers=auth(Role.ADMIN))``."""

    def headers(role: Role) -> dict[str, str]:
        return {"X-API-Key": role_keys[role]}

    return headers


# --- servers (SeaweedFS, PostgreSQL) -------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use these fixtures are marked ``s3`` / ``postgres`` automatically."""
    s3_fixtures = {"seaweed", "s3_store_url"}
    postgres_fixtures = {"postgres_url"}
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & s3_fixtures:
            item.add_marker(pytest.mark.s3)
        if names & postgres_fixtures:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """One SeaweedFS (S3 on a free loopback port) for the whole session."""
    with SeaweedServer() as server:
        yield server


@pytest.fixture
def s3_store_url(seaweed: SeaweedServer) -> Iterator[str]:
    """A storage URL for a fresh bucket (created on ``open_store``), removed afterwards."""
    if not seaweed.running:  # a fault test stopped it and failed before starting it again
        seaweed.start()
    bucket = f"chorus-test-{secrets.token_hex(6)}"
    yield seaweed.storage_url(bucket)
    if seaweed.running:
        with contextlib.suppress(Exception):  # never created, or the server is gone
            seaweed.delete_bucket(bucket)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the session (see chorus.devservers for the server)."""
    with provision_postgres_database(prefix="chorus_test") as url:
        yield url


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """The store on each real back end: files under ``tmp_path``, then a SeaweedFS bucket."""
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    return open_store(request.getfixturevalue("s3_store_url"))
