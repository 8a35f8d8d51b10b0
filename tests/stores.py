"""Typed bases for blob-store doubles (``core.storage.BlobStore``).

``DelegatingStore`` hands every call to a real store: a fault-injecting double subclasses it
and overrides the calls it breaks. ``StoreDouble`` answers no call at all: a fake that stands
for a whole store overrides the calls its test expects, and any other call fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import BinaryIO

from core.storage import DEFAULT_CHUNK_SIZE, BlobStore


class DelegatingStore:
    """Every call goes to ``inner``."""

    def __init__(self, inner: BlobStore) -> None:
        self._inner = inner

    def put(self, key: str, data: bytes) -> None:
        self._inner.put(key, data)

    def put_file(self, key: str, source: BinaryIO) -> None:
        self._inner.put_file(key, source)

    def get(self, key: str) -> bytes:
        return self._inner.get(key)

    def stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        return self._inner.stream(key, chunk_size=chunk_size)

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def delete_many(self, keys: Sequence[str]) -> None:
        self._inner.delete_many(keys)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self._inner.get_range(key, start, length)

    def copy(self, src: str, dst: str) -> None:
        self._inner.copy(src, dst)

    def list(self, prefix: str) -> Iterator[str]:
        return self._inner.list(prefix)

    def exists(self, key: str) -> bool:
        return self._inner.exists(key)

    def size(self, key: str) -> int:
        return self._inner.size(key)

    def check(self, *, min_free_bytes: int = 0) -> None:
        self._inner.check(min_free_bytes=min_free_bytes)

    def presigned_url(self, key: str, *, expires_s: int) -> str | None:
        return self._inner.presigned_url(key, expires_s=expires_s)

    def compact(self) -> None:
        self._inner.compact()


class StoreDouble:
    """Every call fails the test, saying which: subclasses override the calls they expect."""

    def _unexpected(self, call: str) -> AssertionError:
        return AssertionError(f"{type(self).__name__}: unexpected call of {call}")

    def put(self, key: str, data: bytes) -> None:
        raise self._unexpected("put")

    def put_file(self, key: str, source: BinaryIO) -> None:
        raise self._unexpected("put_file")

    def get(self, key: str) -> bytes:
        raise self._unexpected("get")

    def stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        raise self._unexpected("stream")

    def delete(self, key: str) -> None:
        raise self._unexpected("delete")

    def delete_many(self, keys: Sequence[str]) -> None:
        raise self._unexpected("delete_many")

    def get_range(self, key: str, start: int, length: int) -> bytes:
        raise self._unexpected("get_range")

    def copy(self, src: str, dst: str) -> None:
        raise self._unexpected("copy")

    def list(self, prefix: str) -> Iterator[str]:
        raise self._unexpected("list")

    def exists(self, key: str) -> bool:
        raise self._unexpected("exists")

    def size(self, key: str) -> int:
        raise self._unexpected("size")

    def check(self, *, min_free_bytes: int = 0) -> None:
        raise self._unexpected("check")

    def presigned_url(self, key: str, *, expires_s: int) -> str | None:
        raise self._unexpected("presigned_url")

    def compact(self) -> None:
        raise self._unexpected("compact")
