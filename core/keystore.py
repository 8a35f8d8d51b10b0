"""Secrets that must never reach durable storage: the bucket keys that tag contributors (P3).

A bucket key turns a learner id into the bucket's contributor tags. Kept on disk, in a WAL, a
dead tuple or a backup, it would let anyone holding a copy of the files and a list of learner
ids re-link every tag, so it lives only in memory:

- ``tmpfs://PATH`` (the embedded default, ``tmpfs:///dev/shm``): one file per key, mode 0600, in
  a 0700 folder on a RAM-backed file system, shared by the API process, its upload workers, the
  scheduler's job process and ``chorus release`` on the same machine. The folder must be on
  tmpfs or ramfs; anything else refuses to start. Keys outlive a service restart, not a reboot.
- ``redis://HOST:PORT/DB``: shared by replicas on several machines. The server must keep nothing
  on disk (no RDB snapshots, no AOF); one that says it does refuses to start.
- ``memory://``: one process only (tests, tools).

Every store is namespaced by the deployment it serves: a random id kept in that deployment's
database (the ``deployment`` table, written once by its migration), read when the store is
first used, so two deployments (or two tests) on one machine never see each other's keys,
whatever their database URLs look like. A key that is gone (reboot, Redis flush) cannot be
recovered by design: its bucket's sealed clips are purged (``aggregate.retention``).

A Redis server is checked before keys are written, at most every ``PERSISTENCE_CHECK_S``
seconds, and by readiness and the audit: one that was told to persist at run time (``CONFIG
SET appendonly yes``) makes key writes answer 503 instead of putting keys into a dump.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import sqlalchemy as sa

from core.db import sqlite_file_path, translate_db_errors
from core.errors import ConfigurationError, Unavailable

_RAM_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})
# rmdir of a key folder that is not empty (ENOTEMPTY, or EEXIST as POSIX allows) or already gone.
_FOLDER_IN_USE = frozenset({errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT})
_FOLDER_ATTEMPTS = 5
# How often a Redis key store re-checks, before a key write, that it keeps nothing on disk.
PERSISTENCE_CHECK_S = 5.0


class KeyStore(Protocol):
    """Named secrets held in memory only."""

    def get(self, name: str) -> bytes | None: ...

    def ensure_memory_only(self) -> None:
        """Raise ``Unavailable`` if the store would now keep keys on disk."""
        ...

    def put_if_absent(self, name: str, value: bytes) -> bytes:
        """Store ``value`` unless ``name`` is taken; returns the value now stored."""
        ...

    def delete(self, name: str) -> None: ...


class MemoryKeyStore:
    """One process's dictionary: for tests and single-process tools."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> bytes | None:
        with self._lock:
            return self._keys.get(name)

    def put_if_absent(self, name: str, value: bytes) -> bytes:
        with self._lock:
            return self._keys.setdefault(name, value)

    def delete(self, name: str) -> None:
        with self._lock:
            self._keys.pop(name, None)

    def ensure_memory_only(self) -> None:
        return None

    def clear(self) -> None:
        """Lose every key, as a restart of a memory-only store would."""
        with self._lock:
            self._keys.clear()


class TmpfsKeyStore:
    """One 0600 file per key in a 0700 folder on a RAM-backed file system.

    The folder exists only while it holds a key: the delete of its last key removes it, and a
    write that finds it gone (removed by another process a moment before) makes it again.
    """

    def __init__(self, folder: Path | Callable[[], Path]) -> None:
        self._folder = folder

    @property
    def folder(self) -> Path:
        if callable(self._folder):
            self._folder = self._folder()
            with contextlib.suppress(FileNotFoundError):
                os.chmod(self._folder, 0o700)
        return self._folder

    def ensure_memory_only(self) -> None:
        fs_type = file_system_type(self.folder.parent)
        if fs_type not in _RAM_FILE_SYSTEMS:
            raise Unavailable(f"the key store's folder is on {fs_type}, not tmpfs")

    def _make_folder(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Gone again already (another process deleted its last key): the caller tries again.
        with contextlib.suppress(FileNotFoundError):
            os.chmod(self.folder, 0o700)

    def _create_staging(self, staging: Path) -> int:
        for _attempt in range(_FOLDER_ATTEMPTS):
            try:
                return os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except FileNotFoundError:
                self._make_folder()
        raise Unavailable("the key store's folder kept vanishing")

    def _path(self, name: str) -> Path:
        return self.folder / hashlib.sha256(name.encode()).hexdigest()

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None

    def put_if_absent(self, name: str, value: bytes) -> bytes:
        final = self._path(name)
        staging = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}")
        fd = self._create_staging(staging)
        try:
            os.write(fd, value)
        finally:
            os.close(fd)
        try:
            # A hard link appears whole or not at all, and fails if the name is taken.
            os.link(staging, final)
        except FileExistsError:
            pass
        finally:
            staging.unlink(missing_ok=True)
        stored = self.get(name)
        if stored is None:  # deleted between link and read: the caller's bucket is gone
            raise Unavailable("a bucket key vanished while it was being created")
        return stored

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
        # Removes the folder only when it is empty: a key (or a write's staging file) that
        # another process adds meanwhile keeps it, and a write that comes after makes it again.
        try:
            self.folder.rmdir()
        except OSError as exc:
            if exc.errno not in _FOLDER_IN_USE:
                raise


class RedisKeyStore:
    """Keys in a Redis (or Valkey) server that persists nothing."""

    def __init__(self, url: str, *, namespace: str | Callable[[], str]) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._namespace = namespace
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._checked_at = -math.inf

    @property
    def _prefix(self) -> str:
        if callable(self._namespace):
            self._namespace = self._namespace()
        return f"chorus:{self._namespace}:"

    def persistence(self) -> str | None:
        """What the server would write to disk now ("save …", "appendonly"), or None."""
        try:
            config = self._client.config_get("save")
            config.update(self._client.config_get("appendonly"))
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None
        if str(config.get("save", "")).strip():
            return f"save {config['save']}"
        if str(config.get("appendonly", "no")) == "yes":
            return "appendonly"
        return None

    def check_not_persistent(self) -> None:
        """Refuse to start on a server configured to write snapshots or an append-only file."""
        try:
            persisting = self.persistence()
        except Unavailable as exc:
            raise ConfigurationError(
                f"CHORUS_KEY_STORE_URL: the Redis server cannot be checked ({exc.detail})"
            ) from None
        if persisting is not None:
            raise ConfigurationError(
                "CHORUS_KEY_STORE_URL: the Redis server persists data (save or appendonly is "
                "set); bucket keys must never reach disk: run it with --save '' --appendonly no"
            )
        self._checked_at = time.monotonic()

    def ensure_memory_only(self) -> None:
        """Raise Unavailable (503) while the server persists: no key is written into a dump."""
        persisting = self.persistence()
        if persisting is not None:
            raise Unavailable(
                f"the key store started to persist data ({persisting}); bucket keys are not "
                "written until it keeps nothing on disk"
            )
        self._checked_at = time.monotonic()

    def _ensure_recently_checked(self) -> None:
        if time.monotonic() - self._checked_at >= PERSISTENCE_CHECK_S:
            self.ensure_memory_only()

    def get(self, name: str) -> bytes | None:
        try:
            value = self._client.get(self._prefix + name)
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None
        return value if isinstance(value, bytes) else None

    def put_if_absent(self, name: str, value: bytes) -> bytes:
        self._ensure_recently_checked()
        try:
            self._client.set(self._prefix + name, value, nx=True)
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None
        stored = self.get(name)
        if stored is None:
            raise Unavailable("a bucket key vanished while it was being created")
        return stored

    def delete(self, name: str) -> None:
        try:
            self._client.delete(self._prefix + name)
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None


def deployment_id(database_url: str) -> str:
    """The random id of the deployment whose database is ``database_url`` (written once, by
    the migration that made the ``deployment`` table)."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with translate_db_errors(), engine.connect() as connection:
            found = connection.execute(sa.text("SELECT id FROM deployment")).scalars().all()
    except sa.exc.SQLAlchemyError:  # not migrated yet, or another fault of its own
        raise Unavailable("the deployment's id cannot be read from its database") from None
    finally:
        engine.dispose()
    if len(found) != 1:
        raise Unavailable("the database holds no single deployment id")
    return str(found[0])


def namespace_for(database_url: str) -> Callable[[], str]:
    """The namespace of the deployment behind ``database_url``, read once, when first needed
    (the database may not be migrated yet when a store is opened). A relative SQLite path is
    resolved now, against this process's working directory."""
    url = _absolute(database_url)
    found: list[str] = []
    lock = threading.Lock()

    def namespace() -> str:
        with lock:
            if not found:
                found.append(deployment_id(url))
            return found[0]

    return namespace


def _absolute(database_url: str) -> str:
    path = sqlite_file_path(database_url)
    if path is None:
        return database_url
    parsed = sa.engine.make_url(database_url)
    return parsed.set(database=str(Path(path).absolute())).render_as_string(hide_password=False)


def open_key_store(url: str, *, database_url: str) -> KeyStore:
    """The key store named by ``CHORUS_KEY_STORE_URL``, checked to be memory-only."""
    parts = urlsplit(url)
    namespace = namespace_for(database_url)
    if parts.scheme == "memory":
        return MemoryKeyStore()
    if parts.scheme == "tmpfs":
        # A RAM-backed folder is the point here, not a temporary file (checked below).
        base = Path(parts.path or "/dev/shm")  # noqa: S108
        _require_ram_backed(base)
        return TmpfsKeyStore(lambda: base / f"chorus-keys-{namespace()}")
    if parts.scheme in ("redis", "rediss", "valkey"):
        store = RedisKeyStore(url.replace("valkey://", "redis://", 1), namespace=namespace)
        store.check_not_persistent()
        return store
    raise ConfigurationError(
        f"CHORUS_KEY_STORE_URL: unknown scheme {parts.scheme!r} (tmpfs://, redis:// or memory://)"
    )


def _require_ram_backed(path: Path) -> None:
    fs_type = file_system_type(path)
    if fs_type not in _RAM_FILE_SYSTEMS:
        raise ConfigurationError(
            f"CHORUS_KEY_STORE_URL: {path} is on {fs_type or 'an unknown file system'}, not "
            "tmpfs; bucket keys must stay in memory (use tmpfs:///dev/shm or redis://)"
        )


def file_system_type(path: Path) -> str | None:
    """The type of the file system holding ``path``, from the longest /proc/mounts match."""
    try:
        resolved = path.resolve()
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        with contextlib.suppress(ValueError):
            resolved.relative_to(mount_point)
            if best is None or len(mount_point) > best[0]:
                best = (len(mount_point), fields[2])
    return best[1] if best else None
