"""A full or failing medium under the file store is ``StorageFull`` or ``StorageUnavailable``,
never a raw ``OSError``; a failed write leaves nothing; ``/readyz`` sees both."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import core.storage
from core.errors import StorageFull, StorageUnavailable
from core.settings import Settings
from core.storage import TEMP_PREFIX, FileBlobStore, storage_error


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (errno.ENOSPC, StorageFull),
        (errno.EDQUOT, StorageFull),
        (errno.EROFS, StorageUnavailable),
        (errno.EIO, StorageUnavailable),
        (errno.EACCES, StorageUnavailable),
    ],
)
def test_os_errors_map_by_errno(code: int, error: type[Exception]) -> None:
    mapped = storage_error(_fail(code), "write")
    assert type(mapped) is error
    assert errno.errorcode[code] in mapped.detail


@pytest.mark.parametrize(
    ("code", "error"), [(errno.ENOSPC, StorageFull), (errno.EROFS, StorageUnavailable)]
)
def test_a_failed_write_leaves_neither_object_nor_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, error: type[Exception]
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put("pending/old", b"previous")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if TEMP_PREFIX in os.readlink(f"/proc/self/fd/{fd}"):
            raise _fail(code)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(error):
        store.put("pending/new", b"x" * 10_000)
    with pytest.raises(error):
        store.put("pending/old", b"replacement")
    with pytest.raises(error):
        store.copy("pending/old", "releases/r/clips/c.flac")
    monkeypatch.undo()
    assert list(store.list("")) == ["pending/old"]
    assert store.get("pending/old") == b"previous"
    assert list((tmp_path / "blobs").rglob(f"{TEMP_PREFIX}*")) == []


def test_a_failing_read_is_storage_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put("pending/a", b"data")

    def read_bytes(_path: Path) -> bytes:
        raise _fail(errno.EIO)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(StorageUnavailable):
        store.get("pending/a")


def test_check_takes_a_real_write_and_measures_free_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.check(min_free_bytes=1)
    with pytest.raises(StorageFull, match="threshold"):
        store.check(min_free_bytes=2**62)

    def read_only(_directory: Path) -> tuple[int, str]:
        raise _fail(errno.EROFS)

    monkeypatch.setattr(core.storage, "_mkstemp", read_only)
    with pytest.raises(StorageUnavailable, match="EROFS"):
        store.check()
    monkeypatch.undo()
    assert list((tmp_path / "blobs").iterdir()) == []  # the probe leaves nothing


def test_readyz_is_not_ready_below_the_free_space_threshold(
    make_settings: Callable[..., Settings],
) -> None:
    from chorus.app import create_app

    settings = make_settings(storage_min_free_mb=2**40)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"] == {
        "database": "ok",
        "storage": "storage_full",
        "key_store": "ok",
        "idempotency_store": "ok",
    }
    assert body["code"] == "storage_full"


def test_readyz_is_not_ready_on_a_read_only_store(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/readyz").status_code == 200

    def read_only(_directory: Path) -> tuple[int, str]:
        raise _fail(errno.EROFS)

    monkeypatch.setattr(core.storage, "_mkstemp", read_only)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "storage_unavailable"


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("InsufficientStorage", 507, StorageFull),
        ("XMinioStorageFull", 507, StorageFull),
        ("ServiceUnavailable", 503, StorageUnavailable),
    ],
)
def test_s3_answers_map_to_full_or_unavailable(
    code: str, status: int, error: type[Exception]
) -> None:
    from botocore.stub import Stubber

    from core.storage_s3 import S3BlobStore

    store = S3BlobStore.from_url(
        "s3://chorus?endpoint_url=http://127.0.0.1:9&region=us-east-1&access_key=k&secret_key=s"
    )
    with Stubber(store._client) as stub:
        stub.add_client_error("put_object", service_error_code=code, http_status_code=status)
        with pytest.raises(error):
            store.put("pending/a", b"data")
