"""Downloads of released data with a known length: whole files, byte ranges, the archive.

A download is a list of segments (bytes in memory, or a range of a stored object); its length
is known before the first byte, so every download answers ``HEAD`` and a single ``Range``
with ``Content-Length`` (``206`` with ``Content-Range``; ``416`` for a range past the end).

The archive of a release is one tar of its dataset folder, made without reading the shards'
members: the small files (card, tables, checksums, manifest) each get a header, then every
shard's bytes follow as they are stored, less each shard's end-of-archive marker (the shards
are plain USTAR tars of ``clips/<clip>.flac``), then one end marker. Its members are the
folder's paths (``README.md``, ``clips/<clip>.flac``, …): unpack it into an empty folder.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from aggregate.dataset import (
    DATASET_FILES,
    END_OF_ARCHIVE,
    MANIFEST,
    SHARD_PREFIX,
    member_header,
    padded,
)
from aggregate.release import release_prefix
from aggregate.tables import Release
from core.errors import BlobNotFound, NotFound, RangeNotSatisfiable
from core.storage import BlobStore

READ_CHUNK = 4 * 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SHARD_FILE = re.compile(r"^shards/shard-\d{5}\.tar$")


@dataclass(frozen=True)
class Segment:
    """``size`` bytes: ``data`` itself, or the object ``key`` from byte ``start``."""

    size: int
    data: bytes | None = None
    key: str | None = None
    start: int = 0

    def read(self, store: BlobStore, offset: int, length: int) -> Iterator[bytes]:
        """``length`` bytes of the segment from ``offset``."""
        if self.data is not None:
            yield self.data[offset : offset + length]
            return
        assert self.key is not None
        position = self.start + offset
        end = position + length
        while position < end:
            chunk = store.get_range(self.key, position, min(READ_CHUNK, end - position))
            if not chunk:
                raise BlobNotFound(f"object {self.key!r} ended early")
            yield chunk
            position += len(chunk)


def object_segments(store: BlobStore, key: str) -> list[Segment]:
    return [Segment(store.size(key), key=key)]


def file_segments(store: BlobStore, release: Release, name: str) -> list[Segment]:
    """One file of the release's dataset: a table, the card, the checksums, the manifest or a
    shard. Anything else is ``NotFound`` (nothing outside the release's files is reachable)."""
    if name not in (*DATASET_FILES, MANIFEST) and not _SHARD_FILE.match(name):
        raise NotFound("no file of this name in this release")
    return object_segments(store, f"{release_prefix(release.id)}{name}")


def archive_segments(store: BlobStore, release: Release) -> list[Segment]:
    """The release's dataset folder as one tar (see the module docstring)."""
    prefix = release_prefix(release.id)
    mtime = calendar.timegm(release.release_day.timetuple())
    segments: list[Segment] = []

    def member(name: str, key: str, size: int, start: int = 0) -> None:
        segments.append(Segment(512, data=member_header(name, size, mtime)))
        segments.append(Segment(size, key=key, start=start))
        if padded(size) > size:
            segments.append(Segment(padded(size) - size, data=b"\0" * (padded(size) - size)))

    for name in (*DATASET_FILES, MANIFEST):
        key = f"{prefix}{name}"
        try:
            size = store.size(key)
        except BlobNotFound:
            if name == MANIFEST:
                raise
            continue  # a release made before releases carried a dataset folder
        member(name, key, size)
    for key in store.list(f"{prefix}{SHARD_PREFIX}"):
        size = store.size(key) - len(END_OF_ARCHIVE)
        segments.append(Segment(size, key=key))
    for key in store.list(f"{prefix}clips/"):  # loose clips of an earlier layout
        member(key.removeprefix(prefix), key, store.size(key))
    segments.append(Segment(len(END_OF_ARCHIVE), data=END_OF_ARCHIVE))
    return segments


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive of the one range ``header`` asks for, or None for the whole
    file (no header, several ranges or another unit: a full answer is allowed then)."""
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(f"the file has {size} bytes")
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(f"the file has {size} bytes")
    return start, end


def _read(store: BlobStore, segments: list[Segment], start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start``…``end`` (inclusive) of the concatenated segments."""
    offset = 0
    for segment in segments:
        seg_end = offset + segment.size
        if seg_end > start and offset <= end:
            first = max(start, offset) - offset
            last = min(end + 1, seg_end) - offset
            yield from segment.read(store, first, last - first)
        offset = seg_end
        if offset > end:
            return


def ranged_response(
    request: Request,
    store: BlobStore,
    segments: list[Segment],
    *,
    media_type: str,
    filename: str,
) -> Response:
    """The download for ``GET`` or ``HEAD``, whole or the one range asked for."""
    size = sum(segment.size for segment in segments)
    wanted = parse_range(request.headers.get("range"), size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    status = 200
    start, end = 0, size - 1
    if wanted is not None:
        start, end = wanted
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(
        _read(store, segments, start, end) if end >= start else iter(()),
        status_code=status,
        headers=headers,
        media_type=media_type,
    )
