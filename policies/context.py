"""What every audit check reads, and what several checks share within one run."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from core.db import Database
from core.keystore import KeyStore
from core.storage import BlobStore, ChunkReader
from policies.policy import Policy

RELEASES_PREFIX = "releases/"
PENDING_PREFIX = "pending/"
CLIP_TABLES = ("buckets", "pending_clips", "releases", "released_clips")
ID_COLUMNS = {
    "buckets": ("id", "release_id"),
    "pending_clips": ("id", "bucket_id"),
    "releases": ("id", "bucket_id"),
    "released_clips": ("id", "release_id"),
}


@dataclass
class AuditContext:
    """Everything a check may read, plus what several checks share within one run."""

    database: Database
    store: BlobStore
    policy: Policy
    canaries: tuple[str, ...] = ()
    log_dirs: tuple[Path, ...] = ()
    # The deployment's bucket-key store, when the audit can reach it (the service, the CLI).
    key_store: KeyStore | None = None
    _object_keys: dict[str, list[str]] = field(default_factory=dict)
    _released_digests: dict[str, str] | None = None

    @property
    def engine(self) -> Engine:
        return self.database.engine

    def keys(self, prefix: str) -> list[str]:
        if prefix not in self._object_keys:
            self._object_keys[prefix] = sorted(self.store.list(prefix))
        return self._object_keys[prefix]

    def released_clip_keys(self) -> list[str]:
        """Loose released clip objects (``releases/<id>/clips/<clip>.flac``)."""
        return [key for key in self.keys(RELEASES_PREFIX) if is_clip_key(key)]

    def released_shard_keys(self) -> list[str]:
        """Release shards (``releases/<id>/shards/<shard>.tar``)."""
        return [key for key in self.keys(RELEASES_PREFIX) if is_shard_key(key)]

    def released_clips(self) -> Iterator[tuple[str, bytes]]:
        """Every released clip as ``(subject, bytes)``: each member of each shard (subject
        ``<shard key>:<member>``), then each loose clip object (subject: its key). One shard
        is read at a time."""
        for key in self.released_shard_keys():
            for name, data in shard_members(self.store.stream(key)):
                yield f"{key}:{name}", data
        for key in self.released_clip_keys():
            yield key, self.store.get(key)

    def released_digests(self) -> dict[str, str]:
        """SHA-256 of every released clip, read once per run."""
        if self._released_digests is None:
            self._released_digests = {
                subject: hashlib.sha256(data).hexdigest() for subject, data in self.released_clips()
            }
        return self._released_digests


def is_clip_key(key: str) -> bool:
    parts = key.split("/")
    return len(parts) == 4 and parts[0] == "releases" and parts[2] == "clips"


def is_shard_key(key: str) -> bool:
    parts = key.split("/")
    return (
        len(parts) == 4
        and parts[0] == "releases"
        and parts[2] == "shards"
        and parts[3].endswith(".tar")
    )


def shard_members(shard: bytes | Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of every member of a tar shard (its bytes, or a store stream read
    one member at a time), in order; a member that is not a regular file reads as empty bytes
    (the checks then see it as not FLAC)."""
    source = io.BytesIO(shard) if isinstance(shard, bytes) else ChunkReader(shard)
    with tarfile.open(fileobj=source, mode="r|") as archive:  # type: ignore[call-overload]
        for member in archive:
            handle = archive.extractfile(member) if member.isfile() else None
            yield member.name, (handle.read() if handle is not None else b"")


def release_id_of(key: str) -> str:
    return key.split("/")[1]
