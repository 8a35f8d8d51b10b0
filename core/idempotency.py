"""Idempotency keys of uploads: a retry after a lost answer gets the first answer again.

An app that sends ``Idempotency-Key: <fresh random value>`` with an upload and loses the answer
(a dropped connection, a timeout) retries with the same key; within ``ttl_s`` the retry is
answered 201 again instead of ``409 contribution_limit``, and nothing is stored twice.

Upholds P3 and P4: only a SHA-256 hash of the key is kept, with a state (``busy`` while the
first request runs, ``done`` once it was accepted) and nothing else: no learner id, token,
exercise, clip or time. It lives where bucket keys live, never in the database or on disk: in a
tmpfs folder of its own (one machine; its files' times are lost with the entry), or in Redis
(replicas) with a native expiry. An entry outlives its window by at most one sweep: a durable
record of it would be a receipt time.

A ``busy`` entry whose request died (a killed worker) is taken over after ``busy_ttl_s``.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from core.errors import ConfigurationError, InvalidInput, Unavailable
from core.files import write_private_bytes

IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TTL_S = 3600
# Longer than an upload may take (ingest.routes: 120 s to send it, then the worker's share).
DEFAULT_BUSY_TTL_S = 300
_KEY = re.compile(r"[A-Za-z0-9._:-]{8,128}")
_BUSY = b"busy"
_DONE = b"done"


class Claim(enum.StrEnum):
    NEW = "new"  # this request holds the key now: run it, then complete or release
    DONE = "done"  # an earlier request with this key was accepted: answer as it was
    BUSY = "busy"  # an earlier request with this key is still running


def key_hash(value: str) -> str:
    """The SHA-256 of a well-formed key: 8–128 characters of letters, digits and ``._:-``."""
    if not _KEY.fullmatch(value):
        raise InvalidInput(
            f"{IDEMPOTENCY_HEADER} must be 8 to 128 characters of letters, digits and '._:-' "
            "(a fresh UUID per upload, say)"
        )
    return hashlib.sha256(value.encode("ascii")).hexdigest()


class IdempotencyStore(Protocol):
    def claim(self, digest: str) -> Claim: ...

    def complete(self, digest: str) -> None:
        """The request holding ``digest`` was accepted: retries get its answer until expiry."""
        ...

    def release(self, digest: str) -> None:
        """The request holding ``digest`` failed: a retry runs afresh."""
        ...


class MemoryIdempotencyStore:
    """One process's dictionary (tests, a single process)."""

    def __init__(self, *, ttl_s: int = DEFAULT_TTL_S, busy_ttl_s: int = DEFAULT_BUSY_TTL_S):
        self.ttl_s = ttl_s
        self.busy_ttl_s = busy_ttl_s
        self._entries: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def claim(self, digest: str) -> Claim:
        now = time.monotonic()
        with self._lock:
            for name in [n for n, (_, until) in self._entries.items() if until <= now]:
                del self._entries[name]
            entry = self._entries.get(digest)
            if entry is None:
                self._entries[digest] = (_BUSY, now + self.busy_ttl_s)
                return Claim.NEW
            return Claim.DONE if entry[0] == _DONE else Claim.BUSY

    def complete(self, digest: str) -> None:
        with self._lock:
            self._entries[digest] = (_DONE, time.monotonic() + self.ttl_s)

    def release(self, digest: str) -> None:
        with self._lock:
            self._entries.pop(digest, None)


class TmpfsIdempotencyStore:
    """One file per key hash in a 0700 folder on tmpfs, shared by the processes of a machine.

    An entry's age is its file's modification time (in RAM, gone with the file); expired
    entries are removed by a sweep at most every ``sweep_every_s`` seconds per process.
    """

    def __init__(
        self,
        folder: Path,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        busy_ttl_s: int = DEFAULT_BUSY_TTL_S,
        sweep_every_s: float = 60.0,
    ) -> None:
        self.folder = folder
        self.ttl_s = ttl_s
        self.busy_ttl_s = busy_ttl_s
        self.sweep_every_s = sweep_every_s
        self._next_sweep = 0.0
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)

    def _path(self, digest: str) -> Path:
        return self.folder / digest

    def _expired(self, state: bytes, modified: float, now: float) -> bool:
        return modified + (self.ttl_s if state == _DONE else self.busy_ttl_s) <= now

    def claim(self, digest: str) -> Claim:
        self._sweep()
        path = self._path(digest)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                try:
                    state = path.read_bytes()
                    modified = path.stat().st_mtime
                except FileNotFoundError:
                    continue  # released meanwhile: try to claim it again
                if not self._expired(state, modified, time.time()):
                    return Claim.DONE if state == _DONE else Claim.BUSY
                path.unlink(missing_ok=True)
                continue
            try:
                os.write(fd, _BUSY)
            finally:
                os.close(fd)
            return Claim.NEW
        raise Unavailable("the idempotency key is changing hands; retry")

    def complete(self, digest: str) -> None:
        final = self._path(digest)
        staging = final.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}")
        write_private_bytes(staging, _DONE)
        os.replace(staging, final)  # a retry reads busy or done, never a half-written state

    def release(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def _sweep(self) -> None:
        now = time.time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_every_s
        for path in self.folder.iterdir():
            try:
                if self._expired(path.read_bytes(), path.stat().st_mtime, now):
                    path.unlink(missing_ok=True)
            except FileNotFoundError:
                continue


class RedisIdempotencyStore:
    """Entries in the key store's Redis server, under its namespace, each with its own expiry."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        ttl_s: int = DEFAULT_TTL_S,
        busy_ttl_s: int = DEFAULT_BUSY_TTL_S,
    ) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = f"chorus:{namespace}:idempotency:"
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self.ttl_s = ttl_s
        self.busy_ttl_s = busy_ttl_s

    def claim(self, digest: str) -> Claim:
        name = self._prefix + digest
        try:
            if self._client.set(name, _BUSY, nx=True, ex=self.busy_ttl_s):
                return Claim.NEW
            state = self._client.get(name)
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None
        if state is None:  # expired between the two calls: claim it afresh
            return self.claim(digest)
        return Claim.DONE if state == _DONE else Claim.BUSY

    def complete(self, digest: str) -> None:
        try:
            self._client.set(self._prefix + digest, _DONE, ex=self.ttl_s)
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None

    def release(self, digest: str) -> None:
        try:
            self._client.delete(self._prefix + digest)
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None


def open_idempotency_store(
    key_store_url: str, *, namespace: str, ttl_s: int = DEFAULT_TTL_S
) -> IdempotencyStore:
    """The store beside the bucket keys (``CHORUS_KEY_STORE_URL``), already checked by
    ``core.keystore.open_key_store`` to keep nothing on disk."""
    parts = urlsplit(key_store_url)
    if parts.scheme == "memory":
        return MemoryIdempotencyStore(ttl_s=ttl_s)
    if parts.scheme == "tmpfs":
        base = Path(parts.path or "/dev/shm")  # noqa: S108
        return TmpfsIdempotencyStore(base / f"chorus-idempotency-{namespace}", ttl_s=ttl_s)
    if parts.scheme in ("redis", "rediss", "valkey"):
        url = key_store_url.replace("valkey://", "redis://", 1)
        return RedisIdempotencyStore(url, namespace=namespace, ttl_s=ttl_s)
    raise ConfigurationError(f"CHORUS_KEY_STORE_URL: unknown scheme {parts.scheme!r}")


def new_key() -> str:
    """A fresh key, as an app would make one per upload."""
    return secrets.token_urlsafe(24)
