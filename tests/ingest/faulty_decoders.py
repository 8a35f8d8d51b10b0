"""Sanitize tasks that misbehave on purpose, run inside real decoder workers.

They stand in for a native decoder that crashes or hangs on hostile input; anything else is
passed to the real sanitizer.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.audio import AudioLimits, SanitizedClip, sanitize_audio

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

CRASH = b"CRASH-THE-DECODER"
HANG = b"HANG-THE-DECODER"


def crash_or_sanitize(data: bytes, limits: AudioLimits) -> SanitizedClip:
    if data.startswith(CRASH):
        os._exit(139)  # what a segfault in libsndfile looks like to the parent
    return sanitize_audio(data, limits)


def hang_or_sanitize(data: bytes, limits: AudioLimits) -> SanitizedClip:
    if data.startswith(HANG):
        time.sleep(60)
    return sanitize_audio(data, limits)


KILL = b"KILL-THE-DECODER"


def killed_mid_decode_or_sanitize(data: bytes, limits: AudioLimits) -> SanitizedClip:
    """Dies by SIGKILL half a second into its decode; other uploads are in flight meanwhile."""
    if data.startswith(KILL):
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    return sanitize_audio(data, limits)


# Prefixes that make the worker's next object write fail as a full or read-only medium would.
DISK_FULL = b"FILL-THE-DISK"
READ_ONLY = b"READ-ONLY-DISK"
_armed: dict[str, int] = {}


def storage_fault_or_sanitize(data: bytes, limits: AudioLimits) -> SanitizedClip:
    """Sanitize for real; with a marker, the store's next fsync (ENOSPC) or temporary file
    (EROFS) fails in this worker, as the medium would, once."""
    import errno

    if not _armed:
        _install_faults()
    for marker, code in ((DISK_FULL, errno.ENOSPC), (READ_ONLY, errno.EROFS)):
        if data.startswith(marker):
            _armed["errno"] = code
            data = data[len(marker) :]
    return sanitize_audio(data, limits)


def _install_faults() -> None:
    import errno

    import core.storage

    _armed["installed"] = 1
    real_fsync = os.fsync
    real_mkstemp = core.storage._mkstemp

    def fsync(fd: FileDescriptorLike) -> None:
        number = fd if isinstance(fd, int) else fd.fileno()
        if _armed.get("errno") == errno.ENOSPC and core.storage.TEMP_PREFIX in os.readlink(
            f"/proc/self/fd/{number}"
        ):
            del _armed["errno"]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    def mkstemp(directory: Path) -> tuple[int, str]:
        if _armed.get("errno") == errno.EROFS:
            del _armed["errno"]
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(directory)

    os.fsync = fsync
    core.storage._mkstemp = mkstemp
