"""The tmpfs key store leaves nothing in /dev/shm once its keys are gone, even under races."""

from __future__ import annotations

import secrets
import stat
import threading
from pathlib import Path

from core.keystore import TmpfsKeyStore, open_key_store
from tests.keys import TEST_KEY_STORE_URL

ROUNDS = 200
THREADS = 4


def _tmpfs_store() -> TmpfsKeyStore:
    """A store of its own namespace in the test run's tmpfs folder."""
    store = TmpfsKeyStore(Path(TEST_KEY_STORE_URL.removeprefix("tmpfs://")) / secrets.token_hex(8))
    assert isinstance(open_key_store(TEST_KEY_STORE_URL, database_url="sqlite://"), TmpfsKeyStore)
    return store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_namespace_folder_goes_with_its_last_key() -> None:
    store = _tmpfs_store()
    store.put_if_absent("bucket:a", b"key a")
    store.put_if_absent("bucket:b", b"key b")
    assert _mode(store.folder) == 0o700
    assert {_mode(path) for path in store.folder.iterdir()} == {0o600}

    store.delete("bucket:a")
    assert store.get("bucket:b") == b"key b"  # another key keeps the folder
    store.delete("bucket:b")
    assert not store.folder.exists()
    store.delete("bucket:b")  # deleting again, with no folder, is fine
    assert store.get("bucket:b") is None


def test_a_key_stored_after_the_folder_went_makes_it_again() -> None:
    store = _tmpfs_store()
    store.put_if_absent("bucket:a", b"key a")
    store.delete("bucket:a")
    assert store.put_if_absent("bucket:b", b"key b") == b"key b"
    assert store.get("bucket:b") == b"key b"
    assert _mode(store.folder) == 0o700


def test_keys_added_while_others_remove_the_folder_are_never_lost() -> None:
    """Each thread adds a key and deletes it, over and over: a delete that empties the folder
    races the others' writes, which must still land (and read back) every time."""
    store = _tmpfs_store()
    barrier = threading.Barrier(THREADS)
    lost: list[str] = []

    def churn(thread: int) -> None:
        barrier.wait()
        for round_ in range(ROUNDS):
            name = f"bucket:{thread}-{round_}"
            value = secrets.token_bytes(32)
            if store.put_if_absent(name, value) != value or store.get(name) != value:
                lost.append(name)
            store.delete(name)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert lost == []
    assert not store.folder.exists()
