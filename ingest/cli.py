"""Ingest commands: consent key tooling for development, tests and the demo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from core.errors import ChorusError
from core.files import make_private_dir, write_private_bytes

# Where ``make run`` keeps its development key pair, relative to the working directory.
DEV_KEY_DIR = Path("var/keys")

consent_app = typer.Typer(
    help="Consent keys and tokens for development, tests and the demo.", no_args_is_help=True
)


def _fail(message: str) -> None:
    typer.echo(f"chorus: {message}", err=True)
    raise typer.Exit(2)


@consent_app.command("keygen")
def consent_keygen(
    out: Annotated[
        Path, typer.Option(help="folder for private.pem (0600) and public.pem")
    ] = DEV_KEY_DIR,
) -> None:
    """Create an Ed25519 key pair standing in for the app's account service."""
    from ingest.consent import generate_keypair

    private_pem, public_pem = generate_keypair()
    make_private_dir(out)
    private_path = out / "private.pem"
    if private_path.exists():
        _fail(f"{private_path} exists; refusing to overwrite a key")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(private_pem)
    write_private_bytes(out / "public.pem", public_pem.encode("ascii"))
    typer.echo(f"wrote {private_path} and {out / 'public.pem'}")
    typer.echo(f"serve with CHORUS_CONSENT_PUBLIC_KEY={out / 'public.pem'}")


@consent_app.command("mint")
def consent_mint(
    learner: Annotated[str, typer.Option(help="the learner id (token subject)")],
    age: Annotated[int | None, typer.Option(min=0, help="age in years")] = None,
    child: Annotated[bool, typer.Option("--child", help="flag the learner as a child")] = False,
    version: Annotated[str, typer.Option(help="consent version")] = "speech-research-v1",
    ttl: Annotated[int, typer.Option(min=1, help="lifetime in seconds")] = 3600,
    key: Annotated[
        Path, typer.Option(help="private key PEM (default: the pair `make run` uses)")
    ] = DEV_KEY_DIR / "private.pem",
) -> None:
    """Print a signed consent token (development, tests and the demo)."""
    from ingest.consent import mint_token

    try:
        pem = key.read_bytes()
    except OSError as exc:
        _fail(f"cannot read the private key {key}: {exc.strerror or type(exc).__name__}")
    try:
        token = mint_token(
            pem, learner_id=learner, age=age, child=child, consent_version=version, ttl_s=ttl
        )
    except ChorusError as exc:
        _fail(exc.detail)
    typer.echo(token)
