"""Ingest commands: consent key tooling and the exercise usage catalog."""

from __future__ import annotations

import typer

consent_app = typer.Typer(help="Consent keys and tokens for development, tests and the demo.")
exercises_app = typer.Typer(help="The exercise usage catalog.")
