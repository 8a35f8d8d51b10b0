"""Idempotency keys of uploads: a retry after a lost answer gets the first answer again.

An app that sends ``Idempotency-Key: <fresh random value>`` with an upload and loses the answer
(a dropped connection, a timeout) retries with the same key; within ``ttl_s`` the retry is
answered 201 again instead of ``409 contribution_limit``, and nothing is stored twice.

A key is bound to its learner and its request. An entry is named by a digest of (learner id,
key), so another learner's key is simply a fresh key for them, and it holds a fingerprint of
what was asked (exercise and audio), so the same key with another request answers 422
``idempotency_key_reused`` instead of a 201 for something never stored.

This store is only the fast path. What makes an upload "already stored" is a keyed digest of
its request on its pending row, written in the row's own transaction (``aggregate.buckets``):
a retry whose entry is lost, busy or never completed is recognised there. The store covers the
window after a release, when the pending row is gone.

What no one can recognise, by design: a retry whose first 201 was lost *and* whose key store
was flushed in between (a reboot, a Redis ``FLUSHALL``). The first row's bucket lost its key
with the flush (it is sealed), and only that key could tell the row apart (P3), so the retry is
stored again in a fresh bucket; the audit's ``recordings_released_once`` names the recording if
both copies are released.

A ``busy`` entry knows its owner (boot, PID namespace, PID and process start): a retry after
the owner died takes it over at once; a live owner's retry answers 409 with ``Retry-After``.
On Redis an owner on another machine is judged by its heartbeat key (gone within 15 s of its
death); an owner that cannot be checked at all is taken over after ``busy_ttl_s``.

Upholds P3 and P4: an entry is 16 bytes of name, 41 of value and its expiry, nothing else: no
learner id, token, exercise, clip or arrival order. It lives where bucket keys live, never in
the database or on disk: one SQLite file on tmpfs (one machine, every process; about 150 bytes
of RAM an entry), or Redis (replicas) with native expiry. Expired entries are swept by a
background thread, never on a request's path; an entry outlives its window by at most one
sweep: a durable record of it would be a receipt time.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import re
import secrets
import sqlite3
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from core.errors import ConfigurationError, InvalidInput, Unavailable

IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TTL_S = 3600
# Longer than an upload may take (ingest.routes: 120 s to send it, then the worker's share).
DEFAULT_BUSY_TTL_S = 300
DEFAULT_SWEEP_EVERY_S = 60.0
_KEY = re.compile(r"[A-Za-z0-9._:-]{8,128}")
_BUSY = b"B"
_DONE = b"D"
_DIGEST_BYTES = 16
# boot id (8 bytes), PID namespace (4), PID (4), process start in clock ticks since boot (8)
_OWNER = struct.Struct("!8sIIQ")
_VALUE_BYTES = 1 + _DIGEST_BYTES + _OWNER.size
_SWEEP_BATCH = 256
# Between two batches the write lock is free this long: long enough for an upload waiting in
# SQLite's busy handler (which sleeps 1, 2, 5… ms between tries) to take it before the next.
_SWEEP_PAUSE_S = 0.02
# A process that claims keys in Redis says it is alive this often, for this long.
HEARTBEAT_S = 3.0
ALIVE_TTL_S = 15
_WAL_PAGES = 64


class Claim(enum.StrEnum):
    NEW = "new"  # this request holds the key now: run it, then complete or release
    DONE = "done"  # an earlier request with this key was accepted: answer as it was
    BUSY = "busy"  # an earlier request with this key is still running
    REUSED = "reused"  # the key was used by this learner for another request


def check_key(value: str) -> str:
    """A well-formed key: 8–128 characters of letters, digits and ``._:-``."""
    if not _KEY.fullmatch(value):
        raise InvalidInput(
            f"{IDEMPOTENCY_HEADER} must be 8 to 128 characters of letters, digits and '._:-' "
            "(a fresh UUID per upload, say)"
        )
    return value


def _field(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("!I", len(raw)) + raw  # length-prefixed: no two tuples encode alike


@dataclass(frozen=True)
class IdempotentUpload:
    """An upload sent with an Idempotency-Key, as the store and the pending row know it."""

    entry: bytes  # digest of (learner id, key): the store's entry name
    fingerprint: bytes  # digest of (exercise, audio): what the request asks

    @property
    def request_id(self) -> bytes:
        """What the pending row keeps, keyed under its bucket's key (``aggregate.buckets``)."""
        return self.entry + self.fingerprint


def idempotent_upload(
    key: str, *, learner_id: str, exercise_id: str, audio: bytes
) -> IdempotentUpload:
    entry = hashlib.sha256(b"entry" + _field(learner_id) + _field(check_key(key))).digest()
    audio_digest = hashlib.sha256(audio).digest()
    fingerprint = hashlib.sha256(b"request" + _field(exercise_id) + audio_digest).digest()
    return IdempotentUpload(entry[:_DIGEST_BYTES], fingerprint[:_DIGEST_BYTES])


# --- owners ----------------------------------------------------------------------------------


def _boot_id() -> bytes:
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii")
        return bytes.fromhex(text.strip().replace("-", ""))[:8]
    except (OSError, ValueError):
        return b"\0" * 8


def _pid_namespace() -> int:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
        return int(link.partition("[")[2].rstrip("]")) & 0xFFFFFFFF
    except (OSError, ValueError):
        return 0


def _process_start(pid: int) -> int | None:
    """The process's start in clock ticks since boot; None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@lru_cache(maxsize=4)
def _owner_of(pid: int) -> bytes:
    return _OWNER.pack(_boot_id(), _pid_namespace(), pid, _process_start(pid) or 0)


def this_owner() -> bytes:
    """This process, as a busy entry names its owner (computed once per process)."""
    return _owner_of(os.getpid())


def owner_is_local(owner: bytes) -> bool:
    """Whether the owner runs on this machine, in this PID namespace (its PID means here)."""
    boot, namespace, _pid, _start = _OWNER.unpack(owner)
    mine_boot, mine_namespace, _my_pid, _my_start = _OWNER.unpack(this_owner())
    return bool(boot == mine_boot and namespace == mine_namespace)


def owner_is_dead(owner: bytes) -> bool:
    """True when the owner surely died; False when it runs or cannot be checked from here."""
    if not owner_is_local(owner):
        return False  # another machine or container: its busy entry expires instead
    _boot, _namespace, pid, start = _OWNER.unpack(owner)
    alive: bool = _process_start(pid) == start
    return not alive


def _value(state: bytes, upload: IdempotentUpload, owner: bytes) -> bytes:
    return state + upload.fingerprint + owner


def _judge(
    value: bytes, upload: IdempotentUpload, is_dead: Callable[[bytes], bool] = owner_is_dead
) -> Claim | None:
    """What an existing entry means for ``upload``; None when it may be taken over."""
    state, fingerprint, owner = value[:1], value[1 : 1 + _DIGEST_BYTES], value[1 + _DIGEST_BYTES :]
    if fingerprint != upload.fingerprint:
        return Claim.REUSED
    if state == _DONE:
        return Claim.DONE
    if len(owner) == _OWNER.size and is_dead(owner):
        return None
    return Claim.BUSY


# --- stores ----------------------------------------------------------------------------------


class IdempotencyStore(Protocol):
    def claim(self, upload: IdempotentUpload) -> Claim: ...

    def complete(self, upload: IdempotentUpload) -> None:
        """The request holding ``upload`` was accepted: retries get its answer until expiry."""
        ...

    def release(self, upload: IdempotentUpload) -> None:
        """The request holding ``upload`` failed: a retry runs afresh."""
        ...

    def check(self) -> None:
        """Raise ``Unavailable`` unless claims can be written now (readiness)."""
        ...


class MemoryIdempotencyStore:
    """One process's dictionary (tests, a single process)."""

    def __init__(
        self,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        busy_ttl_s: int = DEFAULT_BUSY_TTL_S,
        owner: bytes | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.busy_ttl_s = busy_ttl_s
        self._owner = owner
        self._entries: dict[bytes, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def claim(self, upload: IdempotentUpload) -> Claim:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(upload.entry)
            if entry is not None and entry[1] > now:
                judged = _judge(entry[0], upload)
                if judged is not None:
                    return judged
            owner = self._owner or this_owner()
            self._entries[upload.entry] = (_value(_BUSY, upload, owner), now + self.busy_ttl_s)
            return Claim.NEW

    def complete(self, upload: IdempotentUpload) -> None:
        value = _value(_DONE, upload, self._owner or this_owner())
        with self._lock:
            self._entries[upload.entry] = (value, time.monotonic() + self.ttl_s)

    def release(self, upload: IdempotentUpload) -> None:
        with self._lock:
            self._entries.pop(upload.entry, None)

    def check(self) -> None:
        return None

    def sweep(self) -> int:
        now = time.monotonic()
        with self._lock:
            expired = [name for name, (_, until) in self._entries.items() if until <= now]
            for name in expired:
                del self._entries[name]
        return len(expired)


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries "
    "(name BLOB PRIMARY KEY, value BLOB NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires)",
)


class TmpfsIdempotencyStore:
    """One SQLite file in a 0700 folder on tmpfs, shared by the processes of a machine.

    Each call is one short transaction; expired entries are deleted by a background thread
    every ``sweep_every_s`` seconds in batches of a few hundred, so the write lock a request
    may wait for is never held for a whole sweep.
    """

    def __init__(
        self,
        folder: Path | Callable[[], Path],
        *,
        ttl_s: int = DEFAULT_TTL_S,
        busy_ttl_s: int = DEFAULT_BUSY_TTL_S,
        sweep_every_s: float = DEFAULT_SWEEP_EVERY_S,
        owner: bytes | None = None,
    ) -> None:
        # A folder named from the deployment's id is resolved at first use: the database that
        # holds the id may not be migrated yet when the store is opened.
        self._folder = folder
        self.ttl_s = ttl_s
        self.busy_ttl_s = busy_ttl_s
        self.sweep_every_s = sweep_every_s
        self._owner = owner
        self._local = threading.local()
        self._sweeper: _Ticker | None = None
        self._start_lock = threading.Lock()

    @property
    def folder(self) -> Path:
        if callable(self._folder):
            folder = self._folder()
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            self._folder = folder
        elif not self._folder.is_dir():
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self._folder, 0o700)
        return self._folder

    @property
    def path(self) -> Path:
        return self.folder / "entries.sqlite"

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # Owner only; SQLite gives the WAL and shared-memory files the database file's mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            connection = sqlite3.connect(
                self.path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=OFF")  # RAM: nothing to make durable
            # The file is in RAM already: a page cache per thread would only copy it.
            connection.execute("PRAGMA cache_size=-64")
            # A short write-ahead log, cut back after each checkpoint: it is RAM too.
            connection.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
            connection.execute(f"PRAGMA journal_size_limit={_WAL_PAGES * 4096}")
            for statement in _SCHEMA:
                connection.execute(statement)
            self._local.connection = connection
        return connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise Unavailable(f"the idempotency store failed ({type(exc).__name__})") from None

    def _start_sweeper(self) -> None:
        if self._sweeper is None:
            with self._start_lock:
                if self._sweeper is None:
                    self._sweeper = _Ticker(
                        self, self.sweep_every_s, TmpfsIdempotencyStore._background_sweep
                    )

    def _background_sweep(self) -> None:
        self.sweep(pause_s=_SWEEP_PAUSE_S)

    def claim(self, upload: IdempotentUpload) -> Claim:
        self._start_sweeper()
        now = int(time.time())
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT value FROM entries WHERE name = ? AND expires > ?", (upload.entry, now)
            ).fetchone()
            if row is not None:
                judged = _judge(bytes(row[0]), upload)
                if judged is not None:
                    return judged
            connection.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
                (upload.entry, self._value(_BUSY, upload), now + self.busy_ttl_s),
            )
        return Claim.NEW

    def complete(self, upload: IdempotentUpload) -> None:
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
                (upload.entry, self._value(_DONE, upload), int(time.time()) + self.ttl_s),
            )

    def release(self, upload: IdempotentUpload) -> None:
        with self._transaction() as connection:  # only this request's own busy entry
            connection.execute(
                "DELETE FROM entries WHERE name = ? AND value = ?",
                (upload.entry, self._value(_BUSY, upload)),
            )

    def check(self) -> None:
        with self._transaction() as connection:
            connection.execute("SELECT count(*) FROM entries WHERE expires < 0").fetchone()

    def sweep(self, *, pause_s: float = 0.0) -> int:
        """Delete expired entries, a batch per transaction, ``pause_s`` apart; returns how
        many went."""
        removed = 0
        while True:
            if removed:
                time.sleep(pause_s)
            with self._transaction() as connection:
                batch = connection.execute(
                    "DELETE FROM entries WHERE name IN (SELECT name FROM entries "
                    "WHERE expires <= ? LIMIT ?)",
                    (int(time.time()), _SWEEP_BATCH),
                ).rowcount
            removed += batch
            if batch < _SWEEP_BATCH:
                return removed

    def entries(self) -> int:
        with self._transaction() as connection:
            count: int = connection.execute("SELECT count(*) FROM entries").fetchone()[0]
        return count

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()

    def _value(self, state: bytes, upload: IdempotentUpload) -> bytes:
        return _value(state, upload, self._owner or this_owner())


class _Ticker:
    """A daemon thread that runs ``action(store)`` every ``every_s`` seconds while the store
    lives (a sweep, a heartbeat); a failed run is left to the next."""

    def __init__(self, store: Any, every_s: float, action: Callable[[Any], None]) -> None:
        self._stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._run,
            args=(weakref.ref(store), every_s, action),
            name="idempotency-sweep",
            daemon=True,
        )
        self.thread.start()

    def _run(
        self, target: Callable[[], Any], every_s: float, action: Callable[[Any], None]
    ) -> None:
        while not self._stopped.wait(every_s):
            store = target()
            if store is None:
                return
            with contextlib.suppress(Unavailable):
                action(store)
            del store

    def stop(self) -> None:
        self._stopped.set()


# Take over a busy entry only if it still holds what the caller saw, and delete only one's own.
_REPLACE_IF = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end return 0"
)
_DELETE_IF = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


class RedisIdempotencyStore:
    """Entries in the key store's Redis server, under its namespace, each with its own expiry.

    Replicas on other machines cannot see each other's processes, so each process that claims
    keeps a heartbeat key of its own (``ALIVE_TTL_S``, renewed every ``HEARTBEAT_S``): a busy
    entry whose owner's heartbeat is gone is taken over at once.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str | Callable[[], str],
        ttl_s: int = DEFAULT_TTL_S,
        busy_ttl_s: int = DEFAULT_BUSY_TTL_S,
        owner: bytes | None = None,
    ) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._namespace = namespace
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self.ttl_s = ttl_s
        self.busy_ttl_s = busy_ttl_s
        self._owner = owner
        self._heartbeat: _Ticker | None = None
        self._start_lock = threading.Lock()

    @property
    def prefix(self) -> bytes:
        namespace = self._namespace() if callable(self._namespace) else self._namespace
        return f"chorus:{namespace}:i:".encode()

    def _value(self, state: bytes, upload: IdempotentUpload) -> bytes:
        return _value(state, upload, self._owner or this_owner())

    def _alive_name(self, owner: bytes) -> bytes:
        return self.prefix + b"alive:" + owner

    def _beat(self) -> None:
        owner = self._owner or this_owner()
        try:
            self._client.set(self._alive_name(owner), b"1", ex=ALIVE_TTL_S)
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            with self._start_lock:
                if self._heartbeat is None:
                    self._beat()  # before this process's first busy entry can be seen
                    self._heartbeat = _Ticker(self, HEARTBEAT_S, RedisIdempotencyStore._beat)

    def _owner_is_dead(self, owner: bytes) -> bool:
        if owner_is_local(owner):
            return owner_is_dead(owner)
        return not self._client.exists(self._alive_name(owner))

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def claim(self, upload: IdempotentUpload) -> Claim:
        name = self.prefix + upload.entry
        busy = self._value(_BUSY, upload)
        try:
            self._start_heartbeat()
            for _attempt in range(3):
                if self._client.set(name, busy, nx=True, ex=self.busy_ttl_s):
                    return Claim.NEW
                found = self._client.get(name)
                if not isinstance(found, bytes):
                    continue  # expired between the two calls: claim it afresh
                judged = _judge(found, upload, self._owner_is_dead)
                if judged is not None:
                    return judged
                if self._client.eval(_REPLACE_IF, 1, name, found, busy, self.busy_ttl_s):
                    return Claim.NEW  # its owner died: taken over
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None
        raise Unavailable("the idempotency key is changing hands; retry")

    def complete(self, upload: IdempotentUpload) -> None:
        name = self.prefix + upload.entry
        try:
            self._client.set(name, self._value(_DONE, upload), ex=self.ttl_s)
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None

    def release(self, upload: IdempotentUpload) -> None:
        name = self.prefix + upload.entry
        try:
            self._client.eval(_DELETE_IF, 1, name, self._value(_BUSY, upload))
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None

    def check(self) -> None:
        """A write, since a server that answers reads may still refuse or hold writes."""
        try:
            self._client.set(self.prefix + b"ready", b"1", px=1000)
        except self._errors as exc:
            raise Unavailable(f"the key store does not answer ({type(exc).__name__})") from None


def open_idempotency_store(
    key_store_url: str, *, namespace: str | Callable[[], str], ttl_s: int = DEFAULT_TTL_S
) -> IdempotencyStore:
    """The store beside the bucket keys (``CHORUS_KEY_STORE_URL``), already checked by
    ``core.keystore.open_key_store`` to keep nothing on disk."""
    parts = urlsplit(key_store_url)
    if parts.scheme == "memory":
        return MemoryIdempotencyStore(ttl_s=ttl_s)
    if parts.scheme == "tmpfs":
        base = Path(parts.path or "/dev/shm")  # noqa: S108
        if callable(namespace):
            resolve = namespace
            return TmpfsIdempotencyStore(
                lambda: base / f"chorus-idempotency-{resolve()}", ttl_s=ttl_s
            )
        return TmpfsIdempotencyStore(base / f"chorus-idempotency-{namespace}", ttl_s=ttl_s)
    if parts.scheme in ("redis", "rediss", "valkey"):
        url = key_store_url.replace("valkey://", "redis://", 1)
        return RedisIdempotencyStore(url, namespace=namespace, ttl_s=ttl_s)
    raise ConfigurationError(f"CHORUS_KEY_STORE_URL: unknown scheme {parts.scheme!r}")


def new_key() -> str:
    """A fresh key, as an app would make one per upload."""
    return secrets.token_urlsafe(24)
