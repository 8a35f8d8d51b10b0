"""An in-memory ``BlobStore`` for unit tests: same contract, no disk, no sockets.

Set ``available = False`` to make every operation raise ``StorageUnavailable``, as a store
that went away would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO

from core.errors import BlobNotFound, StorageUnavailable
from core.storage import DEFAULT_CHUNK_SIZE, validate_key, validate_prefix

if TYPE_CHECKING:
    from core.storage import BlobStore


class MemoryBlobStore:
    def __init__(self) -> None:
        self.available = True
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryBlobStore({len(self._objects)} objects)"

    def _reachable(self) -> None:
        if not self.available:
            raise StorageUnavailable("the in-memory store is switched off")

    def put(self, key: str, data: bytes) -> None:
        validate_key(key)
        self._reachable()
        with self._lock:
            self._objects[key] = bytes(data)

    def put_file(self, key: str, source: BinaryIO) -> None:
        validate_key(key)
        self.put(key, source.read())

    def get(self, key: str) -> bytes:
        validate_key(key)
        self._reachable()
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise BlobNotFound(f"no object {key!r}") from None

    def stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        data = self.get(key)
        return iter([data[i : i + chunk_size] for i in range(0, len(data), chunk_size)])

    def delete(self, key: str) -> None:
        validate_key(key)
        self._reachable()
        with self._lock:
            self._objects.pop(key, None)

    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.delete(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError("a range starts and lasts at least 0 bytes")
        return self.get(key)[start : start + length]

    def copy(self, src: str, dst: str) -> None:
        validate_key(dst)
        data = self.get(src)
        with self._lock:
            self._objects[dst] = data

    def list(self, prefix: str) -> Iterator[str]:
        validate_prefix(prefix)
        self._reachable()
        with self._lock:
            keys = sorted(key for key in self._objects if key.startswith(prefix))
        return iter(keys)

    def exists(self, key: str) -> bool:
        validate_key(key)
        self._reachable()
        with self._lock:
            return key in self._objects

    def size(self, key: str) -> int:
        return len(self.get(key))

    def check(self, *, min_free_bytes: int = 0) -> None:
        self._reachable()

    def presigned_url(self, key: str, *, expires_s: int) -> str | None:
        validate_key(key)
        return None

    def compact(self) -> None:
        """Nothing to do: a deleted object's bytes are gone with it."""


if TYPE_CHECKING:

    def _conforms(store: MemoryBlobStore) -> BlobStore:
        return store
