"""Blob storage: the ``BlobStore`` protocol, the file store, and ``open_store(url)``.

Keys are relative, ``/``-separated strings (``pending/3f…``, ``releases/<id>/clips/<n>.flac``);
``validate_key`` refuses anything that could escape the store or alias another key. A key may
not also be the folder of other keys (``a`` and ``a/b``): the file store refuses that.

Invariants upheld here:

- P4 no receipt time: a copy writes a new object (never a hard link), so a released object's
  file times say when it was released, not when the pending original arrived.
- P6/P11 pending audio is readable by nobody but the service: the file store creates its
  directories ``0700`` and its objects ``0600``.

A fault of the medium is one of two errors, mapped by ``storage_error`` from ``errno``: no
space (``ENOSPC``, ``EDQUOT``) is ``StorageFull`` (507), anything else the file system refuses
(``EROFS``, ``EIO``, ``EACCES``…) is ``StorageUnavailable`` (503 with ``Retry-After``). A
write that fails leaves no part of itself behind.

The S3 store lives in ``core.storage_s3`` and the in-memory double in ``core.storage_memory``;
``open_store`` picks one from a URL:

    file://./var/blobs               relative to the working directory
    file:///srv/chorus/blobs         absolute
    s3://bucket?endpoint_url=http://127.0.0.1:8333&region=us-east-1[&access_key=…&secret_key=…]
        [&seaweedfs_master=http://127.0.0.1:9333]   (compacts volumes after deletes)
        [&public_endpoint_url=https://s3.example.org]  (the endpoint presigned URLs name)
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable
from urllib.parse import urlsplit

from core.errors import BlobNotFound, ConfigurationError, StorageFull, StorageUnavailable
from core.files import DIR_MODE, make_private_dir, restrict

DEFAULT_CHUNK_SIZE = 65536
DELETE_WORKERS = 8
# Temporary files of in-flight writes carry this prefix; no key segment may start with it.
TEMP_PREFIX = ".chorus-tmp-"


@runtime_checkable
class BlobStore(Protocol):
    """Where clip audio, manifests and archives live. Every method is safe across threads."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing any previous object."""

    def put_file(self, key: str, source: BinaryIO) -> None:
        """Store the open local file ``source``, from where it stands to its end, under
        ``key`` atomically (a file without a name, such as an anonymous temporary file,
        works as well as an opened one)."""

    def get(self, key: str) -> bytes:
        """The object's bytes; ``BlobNotFound`` if there is none."""

    def stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """The object in chunks; ``BlobNotFound`` is raised by this call, before any chunk."""

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is fine."""

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every object of ``keys`` in as few requests as the store allows (S3
        DeleteObjects takes 1,000 a request); missing objects are fine."""

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object from byte ``start`` (fewer at its end);
        ``BlobNotFound`` if there is none."""

    def copy(self, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst`` inside the store; ``BlobNotFound`` if ``src`` is missing."""

    def list(self, prefix: str) -> Iterator[str]:
        """Every key starting with ``prefix`` (a plain string prefix), sorted."""

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int:
        """The object's length in bytes; ``BlobNotFound`` if there is none."""

    def check(self, *, min_free_bytes: int = 0) -> None:
        """Readiness probe: ``StorageUnavailable`` unless the store answers and takes a write;
        ``StorageFull`` if it has less than ``min_free_bytes`` free (where it can tell)."""

    def presigned_url(self, key: str, *, expires_s: int) -> str | None:
        """A time-limited URL a client may fetch the object from, or None if unsupported."""

    def compact(self) -> None:
        """Reclaim the space of deleted objects, so their bytes leave the store's files
        (P3, P4); a no-op where a delete already removes them."""


# --- keys ----------------------------------------------------------------------------------


def validate_key(key: str) -> str:
    """Return ``key`` if it is a well-formed object key; ``ValueError`` saying why not."""
    if not isinstance(key, str) or not key:
        raise ValueError("an object key must be a non-empty string")
    if key.startswith("/"):
        raise ValueError(f"object key {key!r} must be relative (no leading '/')")
    if "\x00" in key or "\\" in key:
        raise ValueError(f"object key {key!r} contains a NUL byte or a backslash")
    for segment in key.split("/"):
        if segment == "":
            raise ValueError(f"object key {key!r} has an empty segment")
        if segment in (".", ".."):
            raise ValueError(f"object key {key!r} has a '{segment}' segment")
        if segment.startswith(TEMP_PREFIX):
            raise ValueError(f"object key {key!r} uses the reserved prefix {TEMP_PREFIX!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: like a key, but it may be empty, end in '/' or stop mid-segment."""
    if prefix == "":
        return prefix
    validate_key(prefix.removesuffix("/"))
    return prefix


# --- faults of the medium ------------------------------------------------------------------

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_error(exc: OSError, action: str) -> StorageFull | StorageUnavailable:
    """The Chorus error for a file system's refusal: full, or unavailable (read-only, I/O
    error, permission). The message names the fault, never a key or a path."""
    reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    if exc.errno in _FULL_ERRNOS:
        return StorageFull(f"storage {action} failed: no space left ({reason})")
    return StorageUnavailable(f"storage {action} failed: {reason}")


@contextlib.contextmanager
def _os_errors(action: str) -> Iterator[None]:
    """Turn an ``OSError`` of the medium into ``StorageFull`` or ``StorageUnavailable``."""
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, action) from exc


# --- streaming -----------------------------------------------------------------------------


class ChunkIterator(Iterator[bytes]):
    """Chunks from an already opened source; closes it when exhausted, closed or collected."""

    def __init__(self, read: Callable[[], bytes], close: Callable[[], None]) -> None:
        self._read = read
        self._close: Callable[[], None] | None = close

    def __next__(self) -> bytes:
        if self._close is None:
            raise StopIteration
        try:
            chunk = self._read()
        except BaseException:
            self.close()
            raise
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class ChunkReader:
    """A read-only file object over chunks (a store stream, a response), for ``tarfile``'s
    stream modes: memory holds at most one chunk and what the reader asked for."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer.extend(chunk)
        take = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:take])
        del self._buffer[:take]
        self.consumed += take
        return data


# --- file store ----------------------------------------------------------------------------


class FileBlobStore:
    """Objects as files under ``root``; the embedded default.

    Writes go to a temporary file in the target directory, are flushed and fsynced, then
    renamed over the target and the directory is fsynced: a crash leaves either the old object
    or the new one, never a partial one. A crash may leave a temporary file behind; they are
    never listed and ``sweep_temp_files`` removes old ones.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        try:
            make_private_dir(self.root)
            restrict(self.root, DIR_MODE)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the storage directory {self.root}: {exc.strerror}"
            ) from exc
        if not self.root.is_dir():
            raise ConfigurationError(f"the storage path {self.root} is not a directory")

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    # writing

    def put(self, key: str, data: bytes) -> None:
        view = memoryview(data)

        def write(handle: BinaryIO) -> None:
            handle.write(view)

        self._write_atomically(self._path(key), write)

    def put_file(self, key: str, source: BinaryIO) -> None:
        def write(handle: BinaryIO) -> None:
            shutil.copyfileobj(source, handle, DEFAULT_CHUNK_SIZE * 16)

        self._write_atomically(self._path(key), write)

    def copy(self, src: str, dst: str) -> None:
        target = self._path(dst)
        try:
            source = open(self._path(src), "rb")  # noqa: SIM115
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(f"no object {src!r}") from None
        except OSError as exc:
            raise storage_error(exc, "read") from exc
        with source:

            def write(handle: BinaryIO) -> None:
                shutil.copyfileobj(source, handle, DEFAULT_CHUNK_SIZE * 16)

            self._write_atomically(target, write)

    def _write_atomically(self, target: Path, write: Callable[[BinaryIO], None]) -> None:
        with _os_errors("write"):
            self._make_parents(target.parent)
            fd, temp_name = _mkstemp(target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                # A file's modification time would say when a clip arrived (P4).
                os.utime(handle.fileno(), (0, 0))
                os.fsync(handle.fileno())
            os.replace(temp_name, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            if isinstance(exc, IsADirectoryError | NotADirectoryError | FileExistsError):
                raise ValueError(
                    f"object key {self._key_of(target)!r} collides with another key's folder"
                ) from exc
            if isinstance(exc, OSError):
                raise storage_error(exc, "write") from exc
            raise
        with _os_errors("write"):
            _fsync_directory(target.parent)

    def _make_parents(self, directory: Path) -> None:
        missing: list[Path] = []
        current = directory
        while current != self.root and not current.is_dir():
            missing.append(current)
            current = current.parent
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=0o700)
            except FileExistsError:
                if not folder.is_dir():
                    raise ValueError(
                        f"object key prefix {self._key_of(folder)!r} is already an object"
                    ) from None
                continue
            _fsync_directory(folder.parent)

    # reading

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(f"no object {key!r}") from None
        except OSError as exc:
            raise storage_error(exc, "read") from exc

    def stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115  (closed by the iterator)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(f"no object {key!r}") from None
        except OSError as exc:
            raise storage_error(exc, "read") from exc

        def read() -> bytes:
            with _os_errors("read"):
                return handle.read(chunk_size)

        return ChunkIterator(read, handle.close)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError("a range starts and lasts at least 0 bytes")
        try:
            with open(self._path(key), "rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(f"no object {key!r}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(f"no object {key!r}") from None
        if not path.is_file():
            raise BlobNotFound(f"no object {key!r}")
        return stat.st_size

    def list(self, prefix: str) -> Iterator[str]:
        validate_prefix(prefix)
        folder, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        with _os_errors("list"):
            keys = [key for key in self._walk(start, folder) if key.startswith(prefix)]
        keys.sort()
        return iter(keys)

    def _walk(self, directory: Path, key_prefix: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            key = f"{key_prefix}/{entry.name}" if key_prefix else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key)
            elif entry.is_file(follow_symlinks=False):
                yield key

    # removing

    def delete(self, key: str) -> None:
        with _os_errors("delete"), contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self._path(key).unlink()

    def delete_many(self, keys: Sequence[str]) -> None:
        """Unlink the files, several at a time (an unlink waits on the file system's journal,
        not the CPU), then make the removals durable with one fsync per folder."""
        paths = [self._path(key) for key in keys]

        def unlink(path: Path) -> Path | None:
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                return None
            return path.parent

        if len(paths) > 1:
            with ThreadPoolExecutor(max_workers=DELETE_WORKERS) as pool:
                folders = set(pool.map(unlink, paths))
        else:
            folders = {unlink(path) for path in paths}
        for folder in folders:
            if folder is not None:
                with contextlib.suppress(FileNotFoundError):
                    _fsync_directory(folder)

    def sweep_temp_files(self, *, older_than_s: float = 3600.0) -> int:
        """Remove temporary files left by interrupted writes; returns how many went."""
        cutoff = time.time() - older_than_s
        removed = 0
        for temp in self.root.rglob(f"{TEMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                # ctime: a live write resets the mtime to the epoch (P4) just before its rename.
                if temp.stat().st_ctime <= cutoff:
                    temp.unlink()
                    removed += 1
        return removed

    # operations

    def check(self, *, min_free_bytes: int = 0) -> None:
        if not self.root.is_dir():
            raise StorageUnavailable(f"the storage directory {self.root} is missing")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"the storage directory {self.root} is not writable")
        with _os_errors("check"):
            # A real write: a read-only or failing medium may still grant access(W_OK).
            fd, temp_name = _mkstemp(self.root)
            try:
                os.write(fd, b"\0")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(temp_name)
            usage = os.statvfs(self.root)
        free = usage.f_bavail * usage.f_frsize
        if free < min_free_bytes:
            raise StorageFull(
                f"the storage has {free // 2**20} MiB free, below the "
                f"{min_free_bytes // 2**20} MiB threshold"
            )

    def presigned_url(self, key: str, *, expires_s: int) -> str | None:
        validate_key(key)
        return None

    def compact(self) -> None:
        """Nothing to do: a deleted file's blocks belong to the file system, not the store."""

    def _key_of(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def _mkstemp(directory: Path) -> tuple[int, str]:
    """A new private temporary file in ``directory``: ``(fd, path)``."""
    while True:
        name = str(directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), name
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue


def _fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- opening by URL ------------------------------------------------------------------------


def open_store(url: str, *, ensure_bucket: bool = True) -> BlobStore:
    """The store a ``CHORUS_STORAGE_URL`` names; ``ConfigurationError`` if it names none.

    An S3 store's bucket is created when missing (unless ``ensure_bucket`` is false), so an
    unreachable S3 endpoint raises ``StorageUnavailable`` here already.
    """
    scheme, separator, _ = url.partition("://")
    if not separator:
        raise ConfigurationError(
            f"the storage URL {_redacted(url)!r} is malformed: expected file://… or s3://…"
        )
    scheme = scheme.lower()
    if scheme == "file":
        return FileBlobStore(_file_root(url))
    if scheme == "s3":
        from core.storage_s3 import S3BlobStore

        store = S3BlobStore.from_url(url)
        if ensure_bucket:
            store.ensure_bucket()
        return store
    raise ConfigurationError(
        f"the storage URL scheme {scheme!r} is not supported: use file:// or s3://"
    )


def _file_root(url: str) -> Path:
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigurationError(f"the file storage URL {url!r} must not carry a query")
    # file://./var/blobs and file://var/blobs are relative to the working directory.
    path = parts.path if parts.netloc in ("", "localhost") else parts.netloc + parts.path
    if not path:
        raise ConfigurationError(f"the file storage URL {url!r} names no directory")
    return Path(path)


def _redacted(url: str) -> str:
    """A URL fit for an error message: no query (it may carry S3 secrets)."""
    return url.split("?", 1)[0]


if TYPE_CHECKING:

    def _conforms(store: FileBlobStore) -> BlobStore:
        return store
