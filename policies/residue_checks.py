"""Audit checks of residue (P3, P4): who can read the service's files, and whether SQLite
keeps deleted rows or their arrival order.

- ``file_modes``: the SQLite database and its ``-wal``/``-shm``/lock siblings, and every file
  and folder of a file store, are the service user's alone (no group or other bits).
- ``sqlite_pragmas``: a new SQLite connection overwrites deleted content (``secure_delete``).
- ``clip_table_rowid``: the pending clip tables are ``WITHOUT ROWID``; a hidden rowid counts
  up with each insert, so it says in what order clips arrived (P4).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from core.files import OTHERS_BITS
from core.storage import FileBlobStore
from policies.context import AuditContext
from policies.findings import Explanation, Finding

ROWID_FREE_TABLES = ("buckets", "pending_clips")


def unless_sqlite(ctx: AuditContext) -> str | None:
    """Not applicable on PostgreSQL: the setting and the rowid are SQLite's."""
    if ctx.database.is_postgres:
        return "the database is PostgreSQL; this is about SQLite's files and rowids"
    return None


def unless_local_files(ctx: AuditContext) -> str | None:
    """Not applicable when neither the database nor the blob store is a local file."""
    if ctx.database.sqlite_file is None and not isinstance(ctx.store, FileBlobStore):
        return (
            "no local file to check: the database is not a SQLite file and the blob store is "
            "not a file store (their servers' own permissions apply)"
        )
    return None


def check_file_modes(ctx: AuditContext) -> Iterable[Finding]:
    """No file or folder of the database or the file store is open to group or others."""
    paths: list[Path] = []
    sqlite_file = ctx.database.sqlite_file
    if sqlite_file is not None:
        paths.extend(_sqlite_files(sqlite_file))
    if isinstance(ctx.store, FileBlobStore):
        paths.extend(_tree(ctx.store.root))
    for path in paths:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if mode & OTHERS_BITS:
            kind = "folder" if stat.S_ISDIR(mode) else "file"
            yield Finding(
                "file_readable_by_others",
                "P3",
                f"the {kind} {path} has mode {stat.S_IMODE(mode):04o}: others than the "
                "service's user may use it (want 0600 files, 0700 folders)",
                str(path),
            )


def _sqlite_files(database: Path) -> list[Path]:
    siblings = [Path(f"{database}{suffix}") for suffix in ("-wal", "-shm", "-journal")]
    locks = sorted(database.parent.glob(f"{database.name}-*.lock"))
    return [database, *siblings, *locks]


def _tree(root: Path) -> Iterator[Path]:
    yield root
    for folder, folders, files in os.walk(root):
        for name in sorted(folders) + sorted(files):
            yield Path(folder) / name


def check_sqlite_pragmas(ctx: AuditContext) -> Iterable[Finding]:
    """A new SQLite connection of the service has ``secure_delete`` on."""
    if ctx.database.secure_delete_enabled() is False:
        yield Finding(
            "sqlite_secure_delete_off",
            "P3",
            "SQLite connections run without secure_delete: deleted pending rows (ids, "
            "contributor tags) stay readable in the database file's pages",
        )


def check_clip_table_rowid(ctx: AuditContext) -> Iterable[Finding]:
    """The pending clip tables have no hidden rowid (they are ``WITHOUT ROWID``)."""
    for table in ctx.database.tables_with_rowid(ROWID_FREE_TABLES):
        yield Finding(
            "clip_table_has_rowid",
            "P4",
            f"table {table} has a hidden rowid, which counts up with every insert and so "
            "says in what order its rows arrived",
            table,
        )


RESIDUE_EXPLANATIONS: Mapping[str, Explanation] = {
    "file_readable_by_others": Explanation(
        cause="the file or folder was created under a permissive umask, or copied or restored "
        "by a tool that does not keep modes (cp without -p, an archive extracted as another "
        "user)",
        remedy="chmod 600 the files and 700 the folders (e.g. chmod -R go= on the folder "
        "named) and run the service under umask 077",
    ),
    "sqlite_secure_delete_off": Explanation(
        cause="a connection was opened outside core.db (another tool or an old build), which "
        "is where Chorus turns secure_delete on",
        remedy="open the database only through Chorus (chorus serve, chorus db upgrade); then "
        "run VACUUM once to overwrite what deleted rows left",
    ),
    "clip_table_has_rowid": Explanation(
        cause="the table was created by hand or by a tool other than the migrations, which "
        "create it WITHOUT ROWID",
        remedy="recreate it through chorus db upgrade on an empty database and copy the rows "
        "over, or rebuild it WITHOUT ROWID by hand",
    ),
}
