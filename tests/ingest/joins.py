"""What an attacker holding copies of the service's files and a published release tries: to join
each released clip to pending-side residue, which carries arrival order and times.

A released clip publishes its bytes (in its shard), their SHA-256, its duration and loudness.
Any of those found outside the release's own files — a window of the clip's audio, a digest of
it (an object store's ETag is an MD5), the IEEE-754 bytes of its loudness in either byte order
— is a join key. P4 holds when no released clip can be found that way in any copy, taken
before, during or after the release.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core import sealing
from policies.context import shard_members

WINDOW = 48


@dataclass(frozen=True)
class ReleasedClip:
    clip_id: str
    data: bytes
    loudness_dbfs: float

    def needles(self, *, release_rows: bool) -> list[bytes]:
        """Byte strings that only this clip's pending residue would contain. Once the release
        has written its own rows (``released_clips`` holds each clip's SHA-256 and loudness:
        release-side, made at release time, in the release's random order), only what no
        release-side row holds is a join key: the audio itself and its MD5 (an ETag)."""
        middle = len(self.data) // 2
        sha = hashlib.sha256(self.data)
        md5 = hashlib.md5(self.data, usedforsecurity=False)
        needles = [
            self.data[middle : middle + WINDOW],
            self.data[-WINDOW:],
            md5.digest(),
            md5.hexdigest().encode(),
        ]
        if not release_rows:
            needles += [
                sha.digest(),
                sha.hexdigest().encode(),
                struct.pack("<d", self.loudness_dbfs),
                struct.pack(">d", self.loudness_dbfs),
            ]
        return needles


def released_clips(get: Callable[[str], bytes], manifest: Mapping[str, Any]) -> list[ReleasedClip]:
    """Every clip of a published release, from its shards and manifest (what anyone has)."""
    prefix = f"releases/{manifest['release_id']}/"
    members: dict[str, bytes] = {}
    for shard in manifest["shards"]:
        members.update(shard_members(get(prefix + shard["name"])))
    return [
        ReleasedClip(clip["clip_id"], members[clip["file_name"]], clip["loudness_dbfs"])
        for clip in manifest["clips"]
    ]


def copy_of_files(root: Path, *, skip: Iterable[str] = ("releases",)) -> dict[str, bytes]:
    """Every file under ``root`` as an attacker's copy would hold it, but the release's own
    files (where a released clip is supposed to be)."""
    skipped = tuple(skip)
    copy = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not any(part in skipped for part in relative.split("/")):
            with contextlib.suppress(OSError):
                copy[relative] = path.read_bytes()
    return copy


def joined_clips(
    copy: Mapping[str, bytes], clips: Iterable[ReleasedClip], *, release_rows: bool
) -> dict[str, str]:
    """Released clip id -> the file of the copy in which one of its join keys was found."""
    joined: dict[str, str] = {}
    for clip in clips:
        needles = clip.needles(release_rows=release_rows)
        for name, data in copy.items():
            if any(needle in data for needle in needles):
                joined[clip.clip_id] = name
                break
    return joined


def _plain_seal(self: sealing.Sealer, plaintext: bytes, *, record: str, field: str) -> bytes:
    return sealing.MAGIC + bytes(12) + plaintext + bytes(16)


def _plain_open(self: sealing.Sealer, sealed: bytes, *, record: str, field: str) -> bytes:
    return sealed[len(sealing.MAGIC) + 12 : -16]


@contextlib.contextmanager
def plaintext_sealing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test double that "seals" by storing the plaintext as it is, in the sealed form: the
    positive control that shows the attack finds what sealing hides. Reachable from no
    configuration, only from a test."""
    with monkeypatch.context() as patch:
        patch.setattr(sealing.Sealer, "seal", _plain_seal)
        patch.setattr(sealing.Sealer, "open", _plain_open)
        yield


def snapshot(root: Path, into: Path) -> Path:
    """A byte-for-byte copy of ``root``'s files (an attacker's disk image of the service)."""
    shutil.copytree(root, into, dirs_exist_ok=True)
    return into
