"""The ``chorus`` command line: the root Typer app wiring every domain's commands."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.auth import Role, create_key
from core.errors import ChorusError, DatabaseUnavailable, StorageUnavailable
from core.files import set_private_umask
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

app = typer.Typer(
    name="chorus",
    help="Chorus: consent-gated speech collection released only in k-anonymous batches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Role API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


def fail(message: str, code: int = 2) -> None:
    """Stop with one clear line on stderr, no traceback."""
    typer.echo(f"chorus: {message}", err=True)
    raise typer.Exit(code)


def _redacted(url: str) -> str:
    """A URL fit for an error line: no password, no query (it may hold S3 secrets)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}"


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's forwarded-header handling: off unless ``CHORUS_FORWARDED_ALLOW_IPS`` names the
    proxies, so a client cannot claim another scheme. Behind a TLS proxy it makes the request's
    scheme ``https`` (redirects stay on https). The forwarded client address is never logged."""
    if settings.forwarded_allow_ips is None:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": settings.forwarded_allow_ips}


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface to bind")] = None,
    port: Annotated[int | None, typer.Option(help="port to bind")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
) -> None:
    """Run the HTTP API (and, unless disabled, the release scheduler)."""
    import uvicorn

    from chorus.app import prepare
    from core.logs import configure_logging
    from core.malloc import limit_malloc_arenas
    from core.metrics import multiprocess_metrics_dir
    from core.protocol import PROTOCOL

    settings = get_settings()
    configure_logging(settings.log_level)
    # Before any thread or worker process starts (core.malloc says why).
    limit_malloc_arenas()
    try:
        database, store, _policy, _keys = prepare(settings)
        database.upgrade()
        store.check()
        database.dispose()
    except DatabaseUnavailable:
        fail(f"the database at {_redacted(settings.database_url)} does not answer")
    except StorageUnavailable:
        fail(f"the store at {_redacted(settings.storage_url)} does not answer")
    except ChorusError as exc:
        fail(exc.detail)
    run = functools.partial(
        uvicorn.run,
        "chorus.app:create_app_from_env",
        factory=True,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        workers=workers,
        access_log=False,
        log_config=None,
        server_header=False,
        **proxy_options(settings),
        http=PROTOCOL,  # closes connections whose headers dawdle (core.protocol)
    )
    if workers == 1:
        run()  # in this process, whose counters are the whole exposition
        return
    # Worker processes count into files of one directory; /metrics sums them.
    with multiprocess_metrics_dir():
        run()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all schema migrations."""
    from core.db import upgrade

    try:
        upgrade(get_settings().database_url)
    except ChorusError as exc:
        fail(exc.detail)
    typer.echo("database schema is up to date")


@contextlib.contextmanager
def _keys_session() -> Iterator[Session]:
    """A write session on the service's database (migrated first), errors as one line."""
    from core.db import Database

    database = Database(get_settings().database_url)
    try:
        database.upgrade()
        with database.session(write=True) as session:
            yield session
    except ChorusError as exc:
        fail(exc.detail)
    finally:
        database.dispose()


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="the key's role")],
    name: Annotated[str, typer.Option(help="who or what holds the key")],
) -> None:
    """Create a role key and print it once; only its hash is stored."""
    from policies.audit import append

    with _keys_session() as session:
        key = create_key(session, role=role, name=name)
        append(session, kind="key_created", body={"role": role.value, "name": name})
    typer.echo(key)


@keys_app.command("list")
def keys_list() -> None:
    """List role keys: id, role, name and whether revoked (the keys themselves are not kept)."""
    from core.auth import get_all

    with _keys_session() as session:
        rows = [
            (key.id, key.role, key.name, "revoked" if key.revoked else "active")
            for key in get_all(session)
        ]
    if not rows:
        typer.echo("no role keys yet (chorus keys create --role ROLE --name NAME)")
        return
    for key_id, role, name, state in rows:
        typer.echo(f"{key_id}  {role:<11}  {state:<7}  {name}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id, from `chorus keys list`")],
) -> None:
    """Revoke a role key: it answers 401 from now on."""
    from core.auth import revoke_key
    from policies.audit import append

    with _keys_session() as session:
        if not revoke_key(session, key_id=key_id):
            fail(f"no role key with id {key_id!r} (see chorus keys list)")
        append(session, kind="key_revoked", body={"id": key_id})
    typer.echo(f"revoked {key_id}")


def _register_domains() -> None:
    from aggregate import cli as aggregate_cli
    from chorus import audit_cli
    from exercises import cli as exercises_cli
    from ingest import cli as ingest_cli
    from policies import cli as policies_cli
    from reports_ml import cli as reports_cli

    app.add_typer(ingest_cli.consent_app, name="consent")
    app.add_typer(policies_cli.audio_app, name="audio")
    app.add_typer(exercises_cli.exercises_app, name="exercises")
    app.add_typer(aggregate_cli.releases_app, name="releases")
    for module in (aggregate_cli, audit_cli):
        for command_name in getattr(module, "ROOT_COMMANDS", ()):
            app.command(command_name)(getattr(module, command_name.replace("-", "_")))
    app.add_typer(reports_cli.app, name="reports")
    from chorus.demo import demo

    app.command("demo")(demo)


_register_domains()


def main() -> None:
    # Before anything is written: every file of this process and of the processes it starts
    # (upload workers, the job process, uvicorn workers inherit the mask) is private (P3).
    set_private_umask()
    try:
        app()
    except ChorusError as exc:
        typer.echo(f"chorus: {exc.detail}", err=True)
        sys.exit(2)
