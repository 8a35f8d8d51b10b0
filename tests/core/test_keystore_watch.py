"""The key store names its folders by deployment, and a Redis key store is watched while it
runs: keys are never written to a server that started to persist (P3, P4)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from core import keystore
from core.db import Database
from core.errors import Unavailable
from core.keystore import RedisKeyStore, TmpfsKeyStore, open_key_store
from core.settings import Settings
from tests.keys import TEST_KEY_STORE_URL

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


def _migrated(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'chorus.db'}"
    database = Database(url)
    database.upgrade()
    database.dispose()
    return url


def test_two_deployments_with_the_same_relative_url_share_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = []
    for name in ("one", "two"):
        folder = tmp_path / name
        _migrated(folder)
        monkeypatch.chdir(folder)
        # The default URL of every deployment: the same string, two databases.
        store = open_key_store(TEST_KEY_STORE_URL, database_url="sqlite:///./chorus.db")
        assert isinstance(store, TmpfsKeyStore)
        store.put_if_absent("bucket:x", name.encode())
        stores.append(store)
    first, second = stores
    assert first.folder != second.folder
    assert first.get("bucket:x") == b"one"
    assert second.get("bucket:x") == b"two"
    for store in stores:
        store.delete("bucket:x")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis server of the test's own, persisting nothing, on a free loopback port."""
    port = _free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        for _attempt in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=10)


def test_a_redis_that_starts_to_persist_gets_no_more_keys(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keystore, "PERSISTENCE_CHECK_S", 0.0)
    store = open_key_store(redis_url, database_url=_migrated(tmp_path / "db"))
    assert isinstance(store, RedisKeyStore)
    assert store.put_if_absent("bucket:a", b"a" * 32) == b"a" * 32

    server = redis.Redis.from_url(redis_url)
    server.config_set("appendonly", "yes")
    with pytest.raises(Unavailable):
        store.put_if_absent("bucket:b", b"b" * 32)
    with pytest.raises(Unavailable):
        store.ensure_memory_only()
    assert store.get("bucket:b") is None

    server.config_set("appendonly", "no")
    server.config_set("save", "3600 1")
    with pytest.raises(Unavailable):
        store.put_if_absent("bucket:b", b"b" * 32)

    server.config_set("save", "")
    assert store.put_if_absent("bucket:b", b"b" * 32) == b"b" * 32
    server.close()


def test_the_audit_reports_a_persisting_key_store(redis_url: str, tmp_path: Path) -> None:
    from chorus.checks import check_key_store_persistence
    from policies.context import AuditContext

    store = open_key_store(redis_url, database_url=_migrated(tmp_path / "db"))
    server = redis.Redis.from_url(redis_url)
    context = AuditContext(database=None, store=None, policy=None, key_store=store)  # type: ignore[arg-type]
    assert list(check_key_store_persistence(context)) == []
    server.config_set("appendonly", "yes")
    (finding,) = check_key_store_persistence(context)
    assert finding.check == "key_store_persists"
    server.config_set("appendonly", "no")
    server.close()


def test_readiness_fails_while_the_redis_key_store_persists(
    redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    from fastapi.testclient import TestClient

    from chorus.app import create_app

    app = create_app(make_settings(key_store_url=redis_url))
    server = redis.Redis.from_url(redis_url)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        server.config_set("appendonly", "yes")
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["checks"]["key_store"] == "unavailable"
        server.config_set("appendonly", "no")
        assert client.get("/readyz").status_code == 200
    server.close()
