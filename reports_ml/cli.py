"""Report scorer commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Translation-report scorer.")

# --- review service (import-staple, retrain, models list|promote) ---------------------------
from reports_ml.review_cli import import_staple, models_app, retrain  # noqa: E402

app.command("import-staple")(import_staple)
app.command("retrain")(retrain)
app.add_typer(models_app, name="models")
