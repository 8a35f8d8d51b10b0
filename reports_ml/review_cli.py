"""Review-service commands, registered in ``reports_ml.cli``: ``import-staple``, ``retrain`` and
``models list|promote|import``. Each opens the configured database and blob store (CHORUS_*), where
the model registry lives."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from core.db import Database
from core.errors import ChorusError
from core.settings import get_settings
from core.storage import open_store
from reports_ml.registry import ModelRegistry, ServingModel, VersionInfo

models_app = typer.Typer(help="Stored scorer versions of the review service.", no_args_is_help=True)


def _fail(message: str) -> None:
    typer.echo(f"chorus: {message}", err=True)
    raise typer.Exit(2)


@contextlib.contextmanager
def _service() -> Iterator[tuple[Database, ServingModel]]:
    settings = get_settings()
    database = Database(settings.database_url)
    try:
        database.upgrade()
        store = open_store(settings.storage_url)
        yield database, ServingModel(ModelRegistry(database, store))
    except ChorusError as exc:
        _fail(exc.detail)
    finally:
        database.dispose()


def import_staple(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="STAPLE gold file")],
    course: Annotated[str, typer.Option(help="course the prompts belong to, e.g. en_pt")],
) -> None:
    """Load a STAPLE gold file's prompts and accepted translations into a course."""
    from reports_ml.review import put_prompts
    from reports_ml.review_models import PromptCreate
    from reports_ml.staple import load_staple

    try:
        prompts = [
            PromptCreate(
                prompt_id=p.prompt_id, text=p.text, accepted=[t.text for t in p.translations]
            )
            for p in load_staple(file)
        ]
    except ChorusError as exc:
        _fail(exc.detail)
    with _service() as (database, serving), database.session(write=True) as session:
        result = put_prompts(session, course=course, prompts=prompts, scorer=serving.current())
    typer.echo(
        f"{course}: {result.created} prompts added, {result.updated} updated, "
        f"{result.prompts} in the course"
    )


def retrain(
    min_new_labels: Annotated[
        int, typer.Option(min=0, help="train only if this many decisions arrived since last time")
    ] = 50,
    seed_data: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="labelled JSONL records to train on too"),
    ] = None,
    random_state: Annotated[int, typer.Option(help="seed of the training run")] = 0,
) -> None:
    """Train on all decisions; promote the new model only if it ranks no worse."""
    from reports_ml.jobs import retrain_reports_model
    from reports_ml.staple import read_records

    try:
        seed = read_records(seed_data) if seed_data is not None else []
    except ChorusError as exc:
        _fail(exc.detail)
    with _service() as (database, serving):
        outcome = retrain_reports_model(
            database,
            serving,
            min_new_labels=min_new_labels,
            seed_records=seed,
            random_state=random_state,
        )
    typer.echo(f"{outcome.status}: {outcome.reason}")
    if outcome.version is not None:
        typer.echo(f"version {outcome.version}; {outcome.rescored} open reports rescored")


@models_app.command("list")
def models_list() -> None:
    """Stored versions, the promoted one marked with *."""
    with _service() as (_database, serving):
        registry = serving.registry
        promoted = registry.promoted_version()
        versions = registry.versions()
    _print_versions(versions, promoted)


def _print_versions(versions: list[VersionInfo], promoted: str | None) -> None:
    if not versions:
        typer.echo("no model versions yet (the queue ranks by times_reported)")
        return
    typer.echo(f"  {'version':<8} {'auc':>7} {'vs':>10} {'vs auc':>7} {'trained on':>10}  created")
    for v in versions:
        mark = "*" if v.version == promoted else " "
        auc = f"{v.auc:.4f}" if v.auc is not None else "-"
        other = f"{v.compared_auc:.4f}" if v.compared_auc is not None else "-"
        typer.echo(
            f"{mark} {v.version:<8} {auc:>7} {v.compared_with or '-':>10} {other:>7} "
            f"{v.trained_on:>10}  {v.created}"
        )


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="version to serve, e.g. 0003")],
) -> None:
    """Serve a stored version (e.g. roll back) and score the open reports with it."""
    from reports_ml.jobs import promote_version

    with _service() as (database, serving):
        rescored = promote_version(database, serving, version)
    typer.echo(f"version {version} promoted; {rescored} open reports rescored")


@models_app.command("import")
def models_import(
    model: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="a model written by `chorus reports train` (a pickle: import only your own)",
        ),
    ],
    promote: Annotated[
        bool, typer.Option(help="serve it at once and score the open reports with it")
    ] = False,
) -> None:
    """Store a model trained with `chorus reports train` as the next version."""
    from reports_ml.jobs import promote_version
    from reports_ml.model import ReportModel

    try:
        trained = ReportModel.load(model)
    except ChorusError as exc:
        _fail(exc.detail)
    card = trained.card
    if card is None:
        _fail(f"{model}: the model has no card; train it again with `chorus reports train`")
    assert card is not None
    with _service() as (database, serving):
        version = serving.registry.add(
            trained,
            {
                "created": card.created,
                "trained_on": card.n_reports,
                "held_back": int(card.metrics.get("holdout_reports") or 0),
                "auc": card.metrics.get("holdout_auc"),
                "compared_with": "heuristic" if "holdout_auc" in card.metrics else None,
                "compared_auc": card.metrics.get("holdout_count_baseline_auc"),
            },
        ).version
        typer.echo(f"{model} stored as version {version}")
        if promote:
            rescored = promote_version(database, serving, version)
            typer.echo(f"version {version} promoted; {rescored} open reports rescored")
