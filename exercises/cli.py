"""``chorus exercises``: the exercise usage catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.errors import ChorusError

exercises_app = typer.Typer(help="The exercise usage catalog.", no_args_is_help=True)


def _fail(message: str) -> None:
    typer.echo(f"chorus: {message}", err=True)
    raise typer.Exit(2)


@exercises_app.command("import")
def exercises_import(
    file: Annotated[Path, typer.Argument(help="CSV with columns exercise_id,learners[,language]")],
) -> None:
    """Replace the usage catalog with the rows of a CSV file."""
    from core.db import Database
    from core.settings import get_settings
    from exercises.catalog import count_eligible, read_usage_csv, replace_usage
    from policies.policy import load_policy

    settings = get_settings()
    try:
        policy = load_policy(settings.policy)
        entries = read_usage_csv(file)
        database = Database(settings.database_url)
        try:
            database.upgrade()
            with database.session() as session:
                total = replace_usage(session, entries)
                eligible = count_eligible(session, min_learners=policy.min_exercise_learners)
        finally:
            database.dispose()
    except ChorusError as exc:
        _fail(exc.detail)
    typer.echo(
        f"usage catalog replaced: {total} exercises, {eligible} with at least "
        f"{policy.min_exercise_learners} learners"
    )
