"""Private files and folders: what the service writes is readable by its own user only (P3).

An attacker with a local account must not read the database, its WAL (which holds deleted
rows until a checkpoint), pending clips or keys. Every file the service creates is ``0600`` in
folders of ``0700``; the process umask (``PRIVATE_UMASK``, set by the ``chorus`` entry point)
covers files made by libraries, and these helpers make it explicit where Chorus creates them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, TextIO

from core.errors import ConfigurationError

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700
# Bits that let anyone but the owner read, write or enter.
OTHERS_BITS = 0o077


def set_private_umask() -> int:
    """Make files and folders created from now on private to this user; returns the old mask.

    Child processes (fork, spawn, forkserver: fork + exec) inherit the mask.
    """
    return os.umask(PRIVATE_UMASK)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as ``0700`` folders (existing ones are left)."""
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=DIR_MODE)
            # mkdir's mode passes through the umask; chmod states it exactly.
            folder.chmod(DIR_MODE)
    return path


def make_private_file(path: Path) -> Path:
    """Create ``path`` empty as ``0600`` if absent; an existing file is narrowed to ``0600``."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        restrict(path, FILE_MODE)
    else:
        os.close(fd)
    return path


def restrict(path: Path, mode: int) -> None:
    """Narrow ``path`` to ``mode`` if others may use it; a file owned by someone else is left
    for the auditor's ``file_modes`` check to report."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if os.stat(path).st_mode & OTHERS_BITS:
            os.chmod(path, mode)


def write_private_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (created ``0600``, or narrowed to it when it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), FILE_MODE)
        handle.write(data)


def private_temp_dir() -> Path:
    """The service's own ``0700`` folder in the system's temporary directory (``TMPDIR``).

    A folder of that name that another user made, or that others may enter, is refused: it
    could let them see or swap the service's temporary files.
    """
    folder = Path(tempfile.gettempdir()) / f"chorus-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=DIR_MODE)
    found = folder.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        raise ConfigurationError(f"{folder} is not a folder of this user; remove it")
    if stat.S_IMODE(found.st_mode) != DIR_MODE:
        folder.chmod(DIR_MODE)
    return folder


# Named temporary files of releases before they went nameless: a killed release left them,
# holding audio of a bucket that was never released.
_LEGACY_TEMPORARY = ("chorus-shard-*.tar", "chorus-release-*")
LEGACY_MIN_AGE_S = 3600.0


def sweep_legacy_temporary_files(min_age_s: float = LEGACY_MIN_AGE_S) -> int:
    """Remove this user's named release temporary files older than ``min_age_s`` from the
    system's temporary directory (a release still running under an older version is younger);
    returns how many went."""
    removed = 0
    deadline = time.time() - min_age_s
    for pattern in _LEGACY_TEMPORARY:
        for path in Path(tempfile.gettempdir()).glob(pattern):
            try:
                found = path.lstat()
            except FileNotFoundError:
                continue
            if found.st_uid != os.getuid() or found.st_mtime > deadline:
                continue
            if stat.S_ISDIR(found.st_mode):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed += 1
    return removed


def anonymous_file() -> BinaryIO:
    """A ``0600`` temporary file in ``private_temp_dir`` without a name (``O_TMPFILE``, or
    unlinked as soon as it is made): it is gone with its descriptor, even after a kill."""
    return tempfile.TemporaryFile(dir=private_temp_dir())


def anonymous_text_file() -> TextIO:
    """``anonymous_file`` for UTF-8 text, written as is (no newline translation)."""
    return tempfile.TemporaryFile("w+", encoding="utf-8", newline="", dir=private_temp_dir())
