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
    file: Annotated[
        Path,
        typer.Argument(help="CSV with columns exercise_id,learners[,language,text,course,skill]"),
    ],
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="add or change these rows, keep the rest (empty cells change nothing)",
        ),
    ] = False,
) -> None:
    """Replace the usage catalog with the rows of a CSV file (or, with --update, upsert them)."""
    from core.db import Database
    from core.settings import get_settings
    from exercises.catalog import (
        count_eligible,
        count_usage,
        read_usage_csv,
        replace_usage,
        update_usage,
    )
    from policies.policy import load_policy

    settings = get_settings()
    try:
        policy = load_policy(settings.policy)
        entries = read_usage_csv(file, update=update)
        database = Database(settings.database_url)
        try:
            database.upgrade()
            with database.session() as session:
                if update:
                    added, changed = update_usage(session, entries)
                    total = count_usage(session)
                else:
                    total = replace_usage(session, entries)
                eligible = count_eligible(session, min_learners=policy.min_exercise_learners)
        finally:
            database.dispose()
    except ChorusError as exc:
        _fail(exc.detail)
    what = f"updated ({added} added, {changed} changed)" if update else "replaced"
    typer.echo(
        f"usage catalog {what}: {total} exercises, {eligible} with at least "
        f"{policy.min_exercise_learners} learners"
    )
