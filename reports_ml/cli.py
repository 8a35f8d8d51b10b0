"""Report scorer commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Translation-report scorer.")
