"""The idempotency stores: claim once, answer ``done`` until expiry, free a failed claim, take
over a claim whose request died. Only hashes of keys, in memory, with an expiry."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.idempotency import (
    Claim,
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    TmpfsIdempotencyStore,
    key_hash,
    new_key,
    open_idempotency_store,
)
from tests.live_server import free_port

DIGEST = key_hash("an-upload-key-0001")


@pytest.fixture
def shm_folder() -> Iterator[Path]:
    folder = Path(f"/dev/shm/chorus-test-idempotency-{os.getpid()}")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _lifecycle(store: IdempotencyStore) -> None:
    assert store.claim(DIGEST) is Claim.NEW
    assert store.claim(DIGEST) is Claim.BUSY  # the first request still runs
    store.release(DIGEST)  # it failed
    assert store.claim(DIGEST) is Claim.NEW
    store.complete(DIGEST)
    assert store.claim(DIGEST) is Claim.DONE
    assert store.claim(key_hash("another-upload-key")) is Claim.NEW


def test_memory_store_lifecycle_and_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryIdempotencyStore(ttl_s=60, busy_ttl_s=10)
    _lifecycle(store)
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 61)
    assert store.claim(DIGEST) is Claim.NEW  # the window has passed


def test_tmpfs_store_lifecycle_expiry_and_sweep(shm_folder: Path) -> None:
    store = TmpfsIdempotencyStore(shm_folder, ttl_s=60, busy_ttl_s=10, sweep_every_s=0)
    _lifecycle(store)
    assert (shm_folder.stat().st_mode & 0o777) == 0o700
    names = sorted(path.name for path in shm_folder.iterdir())
    assert DIGEST in names
    assert all(len(name) == 64 for name in names)  # hashes only
    old = time.time() - 61
    os.utime(shm_folder / DIGEST, (old, old))
    assert store.claim(DIGEST) is Claim.NEW  # expired: claimed afresh
    # A busy claim whose request died is taken over after busy_ttl_s; the sweep removes
    # expired entries it is not asked about.
    stale = time.time() - 11
    os.utime(shm_folder / DIGEST, (stale, stale))
    assert store.claim(key_hash("a-third-upload-key")) is Claim.NEW
    assert not (shm_folder / DIGEST).exists()


def test_redis_store_lifecycle_and_native_expiry(redis_url: str) -> None:
    import redis

    store = RedisIdempotencyStore(redis_url, namespace="test", ttl_s=60, busy_ttl_s=10)
    _lifecycle(store)
    client = redis.Redis.from_url(redis_url)
    name = f"chorus:test:idempotency:{DIGEST}"
    assert client.get(name) == b"done"
    assert 0 < client.ttl(name) <= 60
    busy = f"chorus:test:idempotency:{key_hash('another-upload-key')}"
    assert 0 < client.ttl(busy) <= 10
    client.delete(name)
    assert store.claim(DIGEST) is Claim.NEW


def test_store_follows_the_key_store_url(shm_folder: Path) -> None:
    assert isinstance(open_idempotency_store("memory://", namespace="n"), MemoryIdempotencyStore)
    tmpfs = open_idempotency_store(f"tmpfs://{shm_folder}", namespace="n", ttl_s=120)
    assert isinstance(tmpfs, TmpfsIdempotencyStore)
    assert tmpfs.folder == shm_folder / "chorus-idempotency-n"
    assert tmpfs.ttl_s == 120


@pytest.mark.parametrize("bad", ["", "short", "x" * 129, "a key with spaces", "ключ-ключ-ключ"])
def test_malformed_keys_are_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput, match="Idempotency-Key"):
        key_hash(bad)


def test_keys_hash_to_their_sha256() -> None:
    key = new_key()
    assert len(key_hash(key)) == 64
    assert key_hash(key) == key_hash(key)
    assert key_hash(key) != key_hash(new_key())
