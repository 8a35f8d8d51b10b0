"""The idempotency stores: claim once, answer ``done`` until expiry, refuse the key for another
request, free a failed claim, take over a claim whose owner died. Only digests, in memory, each
entry small, with expiry swept off the request path."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import InvalidInput, Unavailable
from core.idempotency import (
    ALIVE_TTL_S,
    Claim,
    IdempotencyStore,
    IdempotentUpload,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    TmpfsIdempotencyStore,
    check_key,
    idempotent_upload,
    new_key,
    open_idempotency_store,
    owner_is_dead,
    this_owner,
)
from tests.live_server import free_port
from tests.redis_server import RedisServer

UPLOAD = idempotent_upload("an-upload-key-0001", learner_id="l-1", exercise_id="e", audio=b"a")
OTHER_AUDIO = idempotent_upload("an-upload-key-0001", learner_id="l-1", exercise_id="e", audio=b"b")


def _dead_owner() -> bytes:
    """The owner token of a process that has exited (its PID is free or someone else's)."""
    process = subprocess.Popen(["true"])
    process.wait()
    mine = this_owner()
    # This machine and namespace, a PID that ran and exited, and a start that is not its own.
    return mine[:12] + process.pid.to_bytes(4, "big") + (1).to_bytes(8, "big")


@pytest.fixture
def shm_folder() -> Iterator[Path]:
    folder = Path(f"/dev/shm/chorus-test-idempotency-{os.getpid()}")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


def _lifecycle(store: IdempotencyStore) -> None:
    assert store.claim(UPLOAD) is Claim.NEW
    assert store.claim(UPLOAD) is Claim.BUSY  # the first request still runs
    assert store.claim(OTHER_AUDIO) is Claim.REUSED  # same learner and key, other request
    store.release(UPLOAD)  # it failed
    assert store.claim(UPLOAD) is Claim.NEW
    store.complete(UPLOAD)
    assert store.claim(UPLOAD) is Claim.DONE
    assert store.claim(OTHER_AUDIO) is Claim.REUSED
    # Another learner's use of the same key is another entry.
    theirs = idempotent_upload("an-upload-key-0001", learner_id="l-2", exercise_id="e", audio=b"a")
    assert store.claim(theirs) is Claim.NEW
    store.check()


def _taken_over_when_its_owner_died(dead: IdempotencyStore, live: IdempotencyStore) -> None:
    assert dead.claim(UPLOAD) is Claim.NEW  # claimed by a process that is gone now
    assert live.claim(UPLOAD) is Claim.NEW  # at once, not after busy_ttl_s
    assert dead.claim(UPLOAD) is Claim.BUSY  # the new owner is alive


def test_memory_store_lifecycle_and_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryIdempotencyStore(ttl_s=60, busy_ttl_s=10)
    _lifecycle(store)
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 61)
    assert store.claim(UPLOAD) is Claim.NEW  # the window has passed
    assert store.sweep() >= 1


def test_tmpfs_store_lifecycle_expiry_and_takeover(shm_folder: Path) -> None:
    store = TmpfsIdempotencyStore(shm_folder, ttl_s=60, busy_ttl_s=10)
    _lifecycle(store)
    assert (shm_folder.stat().st_mode & 0o777) == 0o700
    assert all(path.stat().st_mode & 0o077 == 0 for path in shm_folder.iterdir())
    dead = TmpfsIdempotencyStore(shm_folder, owner=_dead_owner())
    fresh = idempotent_upload("a-crashed-upload-key", learner_id="l", exercise_id="e", audio=b"")
    assert dead.claim(fresh) is Claim.NEW
    assert store.claim(fresh) is Claim.NEW
    assert dead.claim(fresh) is Claim.BUSY


def test_tmpfs_store_expires_by_time_and_the_sweep_deletes(
    shm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TmpfsIdempotencyStore(shm_folder, ttl_s=60, busy_ttl_s=10, sweep_every_s=3600)
    assert store.claim(UPLOAD) is Claim.NEW
    store.complete(UPLOAD)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert store.claim(UPLOAD) is Claim.NEW  # expired: claimed afresh before any sweep
    monkeypatch.setattr(time, "time", lambda: now + 72)
    assert store.entries() == 1
    assert store.sweep() == 1
    assert store.entries() == 0


def test_the_tmpfs_sweep_runs_in_the_background(shm_folder: Path) -> None:
    store = TmpfsIdempotencyStore(shm_folder, ttl_s=60, busy_ttl_s=1, sweep_every_s=0.2)
    for index in range(50):
        upload = idempotent_upload(f"key-{index:08d}", learner_id="l", exercise_id="e", audio=b"")
        assert store.claim(upload) is Claim.NEW  # busy for a second, never completed
    assert store.entries() == 50
    sweepers = [t for t in threading.enumerate() if t.name == "idempotency-sweep"]
    assert sweepers, "no background sweeper"
    deadline = time.monotonic() + 10
    while store.entries():
        assert time.monotonic() < deadline, "expired entries were never swept"
        time.sleep(0.1)
    store.close()


def test_a_tmpfs_entry_takes_under_200_bytes(shm_folder: Path) -> None:
    store = TmpfsIdempotencyStore(shm_folder)
    count = 20_000
    for index in range(count):
        upload = idempotent_upload(new_key(), learner_id=f"l{index}", exercise_id="e", audio=b"")
        store.claim(upload)
        store.complete(upload)
    connection = store._connection()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(path.stat().st_size for path in shm_folder.iterdir())
    assert size / count <= 200, f"{size / count:.0f} bytes an entry"


def test_redis_store_lifecycle_native_expiry_and_takeover(redis_url: str) -> None:
    import redis

    store = RedisIdempotencyStore(redis_url, namespace="test", ttl_s=60, busy_ttl_s=10)
    _lifecycle(store)
    client = redis.Redis.from_url(redis_url)
    name = store.prefix + UPLOAD.entry
    found = client.get(name)
    assert isinstance(found, bytes)
    assert found[:1] == b"D"
    assert 0 < client.ttl(name) <= 60
    memory = client.memory_usage(name)
    assert memory is not None
    assert memory <= 200, f"{memory} bytes an entry"
    fresh = idempotent_upload("a-crashed-upload-key", learner_id="l", exercise_id="e", audio=b"")
    dead = RedisIdempotencyStore(redis_url, namespace="test", owner=_dead_owner())
    assert dead.claim(fresh) is Claim.NEW
    assert 0 < client.ttl(store.prefix + fresh.entry) <= 300
    assert store.claim(fresh) is Claim.NEW
    assert dead.claim(fresh) is Claim.BUSY
    client.delete(name)
    assert store.claim(UPLOAD) is Claim.NEW


def test_a_replica_on_another_machine_is_judged_by_its_heartbeat(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    store = RedisIdempotencyStore(redis_url, namespace="replicas")
    remote = b"\xee" * 8 + this_owner()[8:]  # another machine's boot: its PID means nothing here
    upload = idempotent_upload("a-replica-upload-key", learner_id="l", exercise_id="e", audio=b"")
    running = RedisIdempotencyStore(redis_url, namespace="replicas", owner=remote)
    assert running.claim(upload) is Claim.NEW
    alive = store.prefix + b"alive:" + remote
    assert 0 < client.ttl(alive) <= ALIVE_TTL_S
    assert store.claim(upload) is Claim.BUSY  # its replica still beats
    running.close()
    client.delete(alive)  # as its expiry would, once the replica is gone
    assert store.claim(upload) is Claim.NEW  # taken over at once, not after busy_ttl_s
    store.close()


def test_a_redis_store_that_does_not_answer_is_unavailable() -> None:
    store = RedisIdempotencyStore(f"redis://127.0.0.1:{free_port()}/0", namespace="gone")
    with pytest.raises(Unavailable):
        store.check()
    with pytest.raises(Unavailable):
        store.claim(UPLOAD)


def test_owners() -> None:
    assert not owner_is_dead(this_owner())
    assert owner_is_dead(_dead_owner())
    elsewhere = b"\xff" * 8 + _dead_owner()[8:]  # another machine: cannot be checked from here
    assert not owner_is_dead(elsewhere)


def test_store_follows_the_key_store_url(shm_folder: Path) -> None:
    assert isinstance(open_idempotency_store("memory://", namespace="n"), MemoryIdempotencyStore)
    tmpfs = open_idempotency_store(f"tmpfs://{shm_folder}", namespace="n", ttl_s=120)
    assert isinstance(tmpfs, TmpfsIdempotencyStore)
    assert tmpfs.folder == shm_folder / "chorus-idempotency-n"
    assert tmpfs.ttl_s == 120


@pytest.mark.parametrize("bad", ["", "short", "x" * 129, "a key with spaces", "ключ-ключ-ключ"])
def test_malformed_keys_are_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput, match="Idempotency-Key"):
        check_key(bad)


def test_an_upload_is_named_by_learner_and_key_and_fingerprinted_by_its_request() -> None:
    key = new_key()

    def upload(learner: str = "l", exercise: str = "e", audio: bytes = b"a") -> IdempotentUpload:
        return idempotent_upload(key, learner_id=learner, exercise_id=exercise, audio=audio)

    assert upload() == upload()
    assert len(upload().entry) == len(upload().fingerprint) == 16
    assert upload("other").entry != upload().entry
    assert upload(exercise="f").entry == upload().entry
    assert upload(exercise="f").fingerprint != upload().fingerprint
    assert upload(audio=b"b").fingerprint != upload().fingerprint
    # Length-prefixed fields: moving a character from one field to the next changes the digest.
    assert upload("le", "x").request_id != upload("l", "ex").request_id
