"""Reading release archives in tests."""

from __future__ import annotations

import tarfile


def member_bytes(archive: tarfile.TarFile, member: str | tarfile.TarInfo) -> bytes:
    """The bytes of a regular file of ``archive`` (fails the test for any other member)."""
    handle = archive.extractfile(member)
    assert handle is not None, f"{member} is not a regular file"
    return handle.read()
