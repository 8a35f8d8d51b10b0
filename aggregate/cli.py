"""Release commands for operators and researchers."""

from __future__ import annotations

import typer

releases_app = typer.Typer(help="List, inspect and download released batches.")
