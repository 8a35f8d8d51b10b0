"""The BlobStore contract, run against the file store, the in-memory double and SeaweedFS."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from chorus.devservers import SeaweedServer
from core.errors import BlobNotFound, ConfigurationError, StorageFull, StorageUnavailable
from core.files import anonymous_file
from core.storage import TEMP_PREFIX, BlobStore, FileBlobStore, open_store
from core.storage_memory import MemoryBlobStore
from core.storage_s3 import S3BlobStore

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["file", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    if request.param == "memory":
        return MemoryBlobStore()
    return open_store(request.getfixturevalue("s3_store_url"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x00\xff" * 7, os.urandom(300_001)], ids=len)
def test_put_then_get_size_and_stream_return_the_same_bytes(store: BlobStore, data: bytes) -> None:
    store.put("clips/a.flac", data)
    assert store.get("clips/a.flac") == data
    assert store.size("clips/a.flac") == len(data)
    assert store.exists("clips/a.flac")
    chunks = list(store.stream("clips/a.flac", chunk_size=65536))
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= 65536 for chunk in chunks)


def test_put_replaces_an_object(store: BlobStore) -> None:
    store.put("manifest.json", b"first")
    store.put("manifest.json", b"second, longer")
    assert store.get("manifest.json") == b"second, longer"
    assert list(store.list("")) == ["manifest.json"]


def test_put_file_uploads_a_local_file(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "archive.tar"
    source.write_bytes(os.urandom(150_000))
    with source.open("rb") as handle:
        store.put_file("releases/r1/archive.tar", handle)
    assert store.get("releases/r1/archive.tar") == source.read_bytes()


def test_put_file_uploads_an_anonymous_file_from_where_it_stands(store: BlobStore) -> None:
    data = os.urandom(150_000)
    with anonymous_file() as handle:
        handle.write(b"skipped" + data)
        handle.seek(len(b"skipped"))
        store.put_file("releases/r1/archive.tar", handle)
    assert store.get("releases/r1/archive.tar") == data


def test_delete_removes_an_object_and_a_missing_one_is_fine(store: BlobStore) -> None:
    store.put("pending/x", b"x")
    store.delete("pending/x")
    assert not store.exists("pending/x")
    assert list(store.list("pending/")) == []
    store.delete("pending/x")
    store.delete("never/was")


def test_delete_many_removes_every_object_and_missing_ones_are_fine(store: BlobStore) -> None:
    keys = [f"batch/{n:04d}" for n in range(1203)]  # more than one S3 DeleteObjects request
    for key in keys:
        store.put(key, b"x")
    store.put("kept/one", b"y")
    store.delete_many([*keys, "batch/never-there"])
    assert list(store.list("batch/")) == []
    assert store.get("kept/one") == b"y"
    store.delete_many([])


def test_get_range_reads_part_of_an_object(store: BlobStore) -> None:
    data = os.urandom(70_000)
    store.put("ranged", data)
    assert store.get_range("ranged", 0, 10) == data[:10]
    assert store.get_range("ranged", 65_000, 4_000) == data[65_000:69_000]
    assert store.get_range("ranged", 69_990, 100) == data[69_990:]  # short at the end
    assert store.get_range("ranged", 70_000, 10) == b""
    assert store.get_range("ranged", 5, 0) == b""
    with pytest.raises(BlobNotFound):
        store.get_range("absent", 0, 1)


def test_presigned_urls_name_the_public_endpoint() -> None:
    store = S3BlobStore.from_url(
        "s3://clips?endpoint_url=http://seaweedfs:8333&access_key=AK&secret_key=SK"
        "&public_endpoint_url=https://s3.example.org"
    )
    url = store.presigned_url("releases/r/shards/shard-00000.tar", expires_s=60)
    assert url is not None
    assert url.startswith("https://s3.example.org/clips/releases/r/shards/shard-00000.tar?")
    assert store.endpoint_url == "http://seaweedfs:8333"  # requests still go inside
    store.close()
    with pytest.raises(ConfigurationError, match="public_endpoint_url"):
        S3BlobStore.from_url("s3://clips?public_endpoint_url=ftp://x")


def test_copy_makes_an_independent_object(store: BlobStore) -> None:
    store.put("pending/p1", b"audio")
    store.copy("pending/p1", "releases/r1/clips/c1.flac")
    store.put("pending/p1", b"changed")
    assert store.get("releases/r1/clips/c1.flac") == b"audio"
    store.delete("pending/p1")
    assert store.get("releases/r1/clips/c1.flac") == b"audio"


@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.get("missing/key"),
        lambda s: s.stream("missing/key"),  # raised by the call, before any chunk
        lambda s: s.size("missing/key"),
        lambda s: s.copy("missing/key", "elsewhere"),
    ],
    ids=["get", "stream", "size", "copy"],
)
def test_a_missing_object_is_blob_not_found(
    store: BlobStore, operation: Callable[[BlobStore], object]
) -> None:
    store.put("missing/other", b"x")
    with pytest.raises(BlobNotFound):
        operation(store)
    assert not store.exists("missing/key")
    assert not store.exists("elsewhere")


def test_a_partly_read_stream_can_be_dropped(store: BlobStore) -> None:
    store.put("big", os.urandom(200_000))
    chunks = store.stream("big", chunk_size=1000)
    assert len(next(chunks)) == 1000
    del chunks  # no leaked handle warning (warnings are errors)
    assert store.size("big") == 200_000


def test_concurrent_writers_never_expose_a_mix(store: BlobStore) -> None:
    versions = [bytes([n]) * 100_000 for n in range(6)]
    store.put("hot", versions[0])
    seen: list[bytes] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(store.get("hot"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda v: store.put("hot", v), versions * 3))
    finally:
        stop.set()
        reader.join()
    assert seen
    assert all(data in versions for data in seen)
    assert store.get("hot") in versions


# --- listing -------------------------------------------------------------------------------


def test_list_gives_sorted_keys_under_a_plain_string_prefix(store: BlobStore) -> None:
    keys = ["p/x/1", "p/x-1", "p/x.1", "p/y", "p/x/2/z", "px", "q/p/x", "a"]
    for key in keys:
        store.put(key, key.encode())
    assert list(store.list("p/")) == sorted(k for k in keys if k.startswith("p/"))
    assert list(store.list("p/x")) == ["p/x-1", "p/x.1", "p/x/1", "p/x/2/z"]
    assert list(store.list("p")) == sorted(k for k in keys if k.startswith("p"))
    assert list(store.list("")) == sorted(keys)
    assert list(store.list("nothing/")) == []


def test_list_handles_thousands_of_objects(store: BlobStore) -> None:
    count = 2_500  # three pages of 1,000 on S3
    wanted = [f"releases/r1/clips/{n:05d}.flac" for n in range(count)]
    others = [f"releases/r10/clips/{n}.flac" for n in range(5)] + ["releases/r1.json"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: store.put(key, b"f"), wanted + others))
    listed = list(store.list("releases/r1/"))
    assert listed == wanted
    assert len(list(store.list("releases/"))) == count + len(others)


@pytest.mark.slow
@pytest.mark.s3
def test_s3_lists_ten_thousand_objects(s3_store_url: str) -> None:
    store = open_store(s3_store_url)
    wanted = sorted(f"pending/{n:06d}" for n in range(10_500))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: store.put(key, b"x"), wanted))
    assert list(store.list("pending/")) == wanted


# --- keys and URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "a/", "a/../b", "..", "./a", "a\x00b", f"a/{TEMP_PREFIX}1"]
)
def test_malformed_keys_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        store.put(key, b"x")
    with pytest.raises(ValueError, match="key"):
        store.get(key)
    with pytest.raises(ValueError, match="key"):
        store.copy("fine", key)


def test_a_listing_prefix_cannot_climb_out(store: BlobStore) -> None:
    with pytest.raises(ValueError, match="key"):
        list(store.list("../"))
    with pytest.raises(ValueError, match="key"):
        list(store.list("/etc"))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://host/blobs", "scheme 'ftp' is not supported"),
        ("./var/blobs", "malformed"),
        ("file://", "names no directory"),
        ("file:///tmp/x?mode=1", "must not carry a query"),
        ("s3://Bad_Bucket?region=us-east-1", "invalid bucket"),
        ("s3://bucket/prefix", "must not have a path"),
        ("s3://bucket?regoin=eu-west-1", "unknown option 'regoin'"),
        ("s3://bucket?access_key=AK", "both access_key and secret_key"),
        ("s3://bucket?endpoint_url=127.0.0.1:8333", "http:// or https://"),
    ],
)
def test_bad_storage_urls_are_one_clear_configuration_error(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as caught:
        open_store(url)
    assert "\n" not in caught.value.detail


def test_file_urls_may_be_relative_or_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("file://./var/blobs")
    assert isinstance(relative, FileBlobStore)
    assert relative.root == tmp_path / "var" / "blobs"
    absolute = open_store(f"file://{tmp_path / 'abs'}")
    assert isinstance(absolute, FileBlobStore)
    assert absolute.root == tmp_path / "abs"
    absolute.put("k", b"v")
    assert (tmp_path / "abs" / "k").read_bytes() == b"v"


def test_s3_url_options_reach_the_client() -> None:
    store = S3BlobStore.from_url(
        "s3://clips?endpoint_url=http%3A%2F%2F127.0.0.1%3A9&region=eu-west-1"
        "&access_key=AK&secret_key=a%2Fb+c"
    )
    assert (store.bucket, store.endpoint_url, store.region) == (
        "clips",
        "http://127.0.0.1:9",
        "eu-west-1",
    )
    credentials = store._client._request_signer._credentials  # type: ignore[attr-defined]
    assert (credentials.access_key, credentials.secret_key) == ("AK", "a/b+c")
    store.close()


# --- interrupted writes --------------------------------------------------------------------


class _FailingSource(io.FileIO):
    """A local file whose reads fail after ``limit`` bytes, as a dying disk would."""

    limit = 120_000
    read_so_far = 0

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.tell() >= self.limit:
            _FailingSource.read_so_far = self.tell()
            raise OSError(5, "simulated read failure")
        view = memoryview(buffer)[: self.limit - self.tell()]
        return super().readinto(view)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        buffer = bytearray(size)
        return bytes(buffer[: self.readinto(buffer)])

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_an_upload_that_fails_midway_leaves_the_old_object(
    store: BlobStore, tmp_path: Path
) -> None:
    source = tmp_path / "new.flac"
    source.write_bytes(os.urandom(1_000_000))
    store.put("clips/c.flac", b"old version")
    for key in ("clips/c.flac", "clips/new.flac"):
        # The read error itself, or the storage error it became (core.storage.storage_error).
        with (
            pytest.raises((OSError, StorageUnavailable)) as failed,
            io.BufferedReader(_FailingSource(source, "r")) as failing,
        ):
            store.put_file(key, failing)
        assert "simulated read failure" in str(failed.value) + str(failed.value.__cause__)
    assert _FailingSource.read_so_far == _FailingSource.limit  # it failed mid-body
    assert store.get("clips/c.flac") == b"old version"
    assert not store.exists("clips/new.flac")
    assert list(store.list("")) == ["clips/c.flac"]


def test_file_store_write_failing_before_the_rename_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put("clips/c.flac", b"old")

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(StorageFull, match="no space left"):
        store.put("clips/c.flac", b"new" * 1000)
    with pytest.raises(StorageFull, match="no space left"):
        store.put("clips/d.flac", b"new")
    monkeypatch.undo()
    assert store.get("clips/c.flac") == b"old"
    assert sorted(p.name for p in (tmp_path / "blobs" / "clips").iterdir()) == ["c.flac"]


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from core.storage import FileBlobStore
    with open(sys.argv[2], "rb") as source:
        FileBlobStore(Path(sys.argv[1])).put_file("clips/big.flac", source)
    """
)


def test_file_store_writer_killed_midway_leaves_no_visible_object(tmp_path: Path) -> None:
    """A real crash: the writer is SIGKILLed while it streams a file into the store."""
    root = tmp_path / "blobs"
    store = FileBlobStore(root)
    fifo = tmp_path / "upload.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root), str(fifo)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        with fifo.open("wb") as pipe:
            pipe.write(os.urandom(3 * 1024 * 1024))
            pipe.flush()
            deadline = time.monotonic() + 20
            while not any(p.stat().st_size > 0 for p in root.rglob(f"{TEMP_PREFIX}*")):
                assert time.monotonic() < deadline, "the writer never started writing"
                time.sleep(0.02)
            writer.send_signal(signal.SIGKILL)
            writer.wait(10)
    except BrokenPipeError:  # pragma: no cover - the writer died first; still a crash
        writer.kill()
        writer.wait(10)
    assert writer.returncode == -signal.SIGKILL
    assert not store.exists("clips/big.flac")
    assert list(store.list("")) == []
    with pytest.raises(BlobNotFound):
        store.get("clips/big.flac")
    assert store.sweep_temp_files(older_than_s=3600) == 0  # a fresh one may be a live write
    assert store.sweep_temp_files(older_than_s=0) == 1
    assert list(root.rglob(f"{TEMP_PREFIX}*")) == []


# --- presigned URLs, readiness, outages ----------------------------------------------------


def test_presigned_url_serves_the_object_on_s3_only(store: BlobStore) -> None:
    store.put("releases/r1/clips/c.flac", b"fLaC-bytes")
    url = store.presigned_url("releases/r1/clips/c.flac", expires_s=60)
    if not isinstance(store, S3BlobStore):
        assert url is None
        return
    assert url is not None
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"fLaC-bytes"
    assert httpx.get(url.replace("Signature=", "Signature=0"), timeout=10).status_code == 403


def test_check_passes_on_a_working_store(store: BlobStore) -> None:
    assert isinstance(store, BlobStore)
    store.check()


@pytest.mark.s3
def test_s3_check_fails_when_the_bucket_is_gone(seaweed: SeaweedServer, s3_store_url: str) -> None:
    store = open_store(s3_store_url)
    assert isinstance(store, S3BlobStore)
    seaweed.delete_bucket(store.bucket)
    with pytest.raises(StorageUnavailable, match="no bucket"):
        store.check()


def test_file_store_check_fails_when_its_directory_is_gone(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    (tmp_path / "blobs").rmdir()
    with pytest.raises(StorageUnavailable, match="missing"):
        store.check()


def test_memory_store_can_play_an_outage() -> None:
    store = MemoryBlobStore()
    store.put("k", b"v")
    store.available = False
    for operation in (store.check, lambda: store.get("k"), lambda: store.put("k", b"w")):
        with pytest.raises(StorageUnavailable):
            operation()
    store.available = True
    assert store.get("k") == b"v"


@pytest.mark.s3
def test_open_store_creates_a_missing_bucket(seaweed: SeaweedServer, s3_store_url: str) -> None:
    store = open_store(s3_store_url)
    store.check()
    client = seaweed.client()
    try:
        assert isinstance(store, S3BlobStore)
        client.head_bucket(Bucket=store.bucket)
    finally:
        client.close()
    open_store(s3_store_url).check()  # opening it again is fine


@pytest.mark.s3
def test_wrong_s3_credentials_stop_start_up_with_one_line(seaweed: SeaweedServer) -> None:
    url = seaweed.storage_url("chorus-creds").replace(seaweed.secret_key, "wrong-secret")
    with pytest.raises(ConfigurationError, match="refused access") as caught:
        open_store(url)
    assert "wrong-secret" not in caught.value.detail


def test_an_unreachable_s3_endpoint_fails_within_seconds() -> None:
    url = f"s3://chorus?endpoint_url=http://127.0.0.1:{_closed_port()}&access_key=a&secret_key=b"
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="EndpointConnectionError"):
        open_store(url)
    store = open_store(url, ensure_bucket=False)
    for operation in (store.check, lambda: store.get("k"), lambda: store.put("k", b"v")):
        with pytest.raises(StorageUnavailable):
            operation()
    with pytest.raises(StorageUnavailable):
        list(store.list(""))
    assert time.monotonic() - started < 5


@pytest.mark.s3
def test_a_stopped_seaweedfs_is_unavailable_and_recovers(
    seaweed: SeaweedServer, s3_store_url: str
) -> None:
    store = open_store(s3_store_url)
    store.put("clips/kept.flac", b"kept")
    seaweed.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            store.check()
        with pytest.raises(StorageUnavailable):
            store.get("clips/kept.flac")
        assert time.monotonic() - started < 5
    finally:
        seaweed.start()
    store.check()
    assert store.get("clips/kept.flac") == b"kept"
    store.put("clips/after.flac", b"after")
    assert list(store.list("clips/")) == ["clips/after.flac", "clips/kept.flac"]


def test_file_store_objects_carry_no_write_time(tmp_path: Path) -> None:
    """P4: an object's modification time must not say when it was written."""
    store = FileBlobStore(tmp_path / "blobs")
    store.put("pending/a.flac", b"data")
    store.copy("pending/a.flac", "releases/r/clips/b.flac")
    for path in (tmp_path / "blobs").rglob("*.flac"):
        assert path.stat().st_mtime == 0


# --- residue: compaction (P3, P4) -------------------------------------------------------------


def _volume_files_holding(data_dir: Path, pattern: bytes) -> list[Path]:
    return [path for path in data_dir.rglob("*.dat") if pattern in path.read_bytes()]


def test_s3_compaction_removes_deleted_objects_from_seaweedfs_volumes(
    seaweed: SeaweedServer, s3_store_url: str
) -> None:
    store = open_store(s3_store_url)
    assert isinstance(store, S3BlobStore)
    assert store.seaweedfs_master == seaweed.master_url
    pattern = os.urandom(960)  # incompressible: stored as it is, whatever the store decides
    store.put("pending/residue-probe", pattern)
    store.put("pending/kept", b"kept " * 100)
    # The object's bytes are in a volume file (once the volume server has written them out); a
    # delete alone leaves them there (with their write time) until the volume is compacted, which
    # SeaweedFS may also do by itself now and then, so only their presence before the delete is
    # asserted.
    deadline = time.monotonic() + 10
    while not _volume_files_holding(seaweed.data_dir, pattern):
        assert time.monotonic() < deadline, "the object's bytes never reached a volume file"
        time.sleep(0.2)
    store.delete("pending/residue-probe")

    # The filer frees a deleted object's chunks in the background: compact until they go.
    deadline = time.monotonic() + 60
    while _volume_files_holding(seaweed.data_dir, pattern):
        assert time.monotonic() < deadline, "the deleted object survived compaction"
        store.compact()
        time.sleep(0.5)
    assert store.get("pending/kept") == b"kept " * 100


def test_s3_compaction_without_a_master_and_on_other_stores_changes_nothing(
    tmp_path: Path,
) -> None:
    s3 = S3BlobStore.from_url("s3://chorus?endpoint_url=http://127.0.0.1:1&region=us-east-1")
    s3.compact()  # no master configured: no request at all
    files = FileBlobStore(tmp_path / "blobs")
    files.put("a/b", b"x")
    files.compact()
    memory = MemoryBlobStore()
    memory.put("a", b"y")
    memory.compact()
    assert (files.get("a/b"), memory.get("a")) == (b"x", b"y")


def test_s3_compaction_reports_an_unreachable_master() -> None:
    url = (
        "s3://chorus?endpoint_url=http://127.0.0.1:1&region=us-east-1"
        "&seaweedfs_master=http://127.0.0.1:1"
    )
    with pytest.raises(StorageUnavailable, match="vacuum"):
        S3BlobStore.from_url(url).compact()


def test_s3_seaweedfs_master_must_be_an_http_url() -> None:
    with pytest.raises(ConfigurationError, match="seaweedfs_master"):
        S3BlobStore.from_url("s3://chorus?seaweedfs_master=ftp://host")


def test_file_store_narrows_an_open_root_and_writes_private_files(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    store = FileBlobStore(root)
    store.put("pending/x/y", b"z")
    assert root.stat().st_mode & 0o777 == 0o700
    assert (root / "pending").stat().st_mode & 0o777 == 0o700
    assert (root / "pending" / "x" / "y").stat().st_mode & 0o777 == 0o600


def test_file_store_creates_missing_parents_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        FileBlobStore(tmp_path / "var" / "blobs")
    finally:
        os.umask(old)
    assert (tmp_path / "var").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "var" / "blobs").stat().st_mode & 0o777 == 0o700
