"""Report scorer commands: ``simulate``, ``train``, ``evaluate``, ``score`` (and the review
service's commands, registered at the end)."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import ChorusError
from reports_ml.models import Prompt, ReportRecord

if TYPE_CHECKING:  # the command modules import scikit-learn only when they run
    from reports_ml.evaluate import Evaluation

app = typer.Typer(help="Translation-report scorer.")

_stderr = Console(stderr=True)
DataArgument = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, help="report records (JSON Lines)"),
]
JobsOption = Annotated[int, typer.Option("--jobs", min=1, help="worker processes for features")]
SeedOption = Annotated[int, typer.Option("--seed", help="random seed")]
SkipInvalidOption = Annotated[
    bool,
    typer.Option(
        "--skip-invalid",
        help="leave out malformed lines (counted, the first few named) instead of stopping",
    ),
]


class LabelSourceChoice(StrEnum):
    SIMULATED = "simulated"
    REVIEWERS = "reviewers"
    UNKNOWN = "unknown"


class Split(StrEnum):
    none = "none"
    prompt = "prompt"
    course = "course"


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A ChorusError ends the command with one line on stderr, no traceback."""
    try:
        yield
    except ChorusError as error:
        typer.echo(f"chorus: {error.detail}", err=True)
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_stderr, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda advance: progress.advance(task, advance)


def _read(data: Path, *, skip_invalid: bool = False) -> list[ReportRecord]:
    from reports_ml.staple import read_records

    skipped: list[str] = []
    with _stderr.status(f"reading {data}"):
        records = read_records(
            data, on_invalid=(lambda error: skipped.append(error.detail)) if skip_invalid else None
        )
    if skipped:
        typer.echo(f"skipped {len(skipped)} invalid line(s) of {data}:", err=True)
        for detail in skipped[:_SKIPPED_SHOWN]:
            typer.echo(f"  {detail}", err=True)
        if len(skipped) > _SKIPPED_SHOWN:
            typer.echo(f"  … and {len(skipped) - _SKIPPED_SHOWN} more", err=True)
    return records


_SKIPPED_SHOWN = 5


@app.command()
def simulate(
    staple_files: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, help="STAPLE *.gold.txt files"),
    ],
    out: Annotated[Path, typer.Option("--out", help="JSON Lines file to write")],
    seed: SeedOption = 0,
    course: Annotated[
        str | None,
        typer.Option(help="course of every file (default: from each file's name)"),
    ] = None,
) -> None:
    """Simulate learner reports from STAPLE gold files (model: reports_ml/simulate.py)."""
    from reports_ml.simulate import simulate_reports
    from reports_ml.staple import course_from_path, load_staple, write_records

    with _user_errors():
        by_course: dict[str, list[Prompt]] = {}
        for file in staple_files:
            by_course.setdefault(course or course_from_path(file), []).extend(load_staple(file))
        total = sum(len(prompts) for prompts in by_course.values())
        with _progress("simulating prompts", total) as advance:
            records = simulate_reports(by_course, seed=seed, progress=advance)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as stream:
        write_records(records, stream)
    correct = sum(bool(record.label) for record in records)
    typer.echo(
        f"wrote {len(records)} reports ({correct} correct, {correct / max(len(records), 1):.1%})"
        f" for {total} prompts of {len(by_course)} course(s) to {out}",
    )


@app.command()
def train(
    data: DataArgument,
    model: Annotated[Path, typer.Option("--model", help="where to write the model (.joblib)")],
    holdout: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.9, help="share of prompts held out for the card's metrics (0: skip)"
        ),
    ] = 0.2,
    seed: SeedOption = 0,
    jobs: JobsOption = 1,
    skip_invalid: SkipInvalidOption = False,
    labels: Annotated[
        LabelSourceChoice,
        typer.Option(
            "--labels",
            help="where DATA's labels come from, for the model card: "
            "simulated (chorus reports simulate) or reviewers (contributors' decisions)",
        ),
    ] = LabelSourceChoice.SIMULATED,
    data_licence: Annotated[
        str | None,
        typer.Option(
            "--data-licence",
            help="licence of DATA, for the model card (default: "
            "STAPLE's CC BY-NC 4.0 for simulated labels)",
        ),
    ] = None,
) -> None:
    """Train the scorer on every labelled record of DATA; writes the model and its JSON card."""
    from reports_ml.evaluate import holdout_metrics
    from reports_ml.model import card_path, train_model

    with _user_errors():
        records = _read(data, skip_invalid=skip_invalid)
        metrics: dict[str, float | None] = {}
        if holdout > 0:
            with _stderr.status("measuring on held-out prompts"):
                metrics = holdout_metrics(
                    records,
                    holdout_fraction=holdout,
                    random_state=seed,
                    n_jobs=jobs,
                )
        labelled = sum(record.label is not None for record in records)
        with _progress("training: features", labelled) as advance:
            trained = train_model(
                records,
                random_state=seed,
                n_jobs=jobs,
                progress=advance,
                label_source=labels.value,
                data_licence=data_licence,
            )
        assert trained.card is not None
        trained.card = trained.card.model_copy(update={"metrics": metrics})
        trained.save(model)
    card = trained.card
    typer.echo(
        f"trained on {card.n_reports} reports ({card.n_correct} correct) of {card.n_prompts} "
        f"prompts in {len(card.courses)} course(s); wrote {model} and {card_path(model)}",
    )
    if metrics:
        typer.echo(
            f"held-out prompts: AUC {metrics['holdout_auc']} (count baseline "
            f"{metrics['holdout_count_baseline_auc']}) on {metrics['holdout_reports']:.0f} reports",
        )


@app.command()
def evaluate(
    data: DataArgument,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="trained model to evaluate on DATA"),
    ] = None,
    split: Annotated[
        Split,
        typer.Option(
            help="none: score DATA with --model; prompt / course: cross-validate "
            "new models on DATA by prompt folds or leaving one course out"
        ),
    ] = Split.none,
    folds: Annotated[int, typer.Option(min=2, help="prompt folds for --split prompt")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="write a PNG: reports per course against AUC"),
    ] = None,
    seed: SeedOption = 0,
    jobs: JobsOption = 1,
) -> None:
    """ROC AUC overall and per course, next to the count baseline (and the n-gram-only model
    when cross-validating)."""
    from reports_ml import evaluate as evaluation_module
    from reports_ml.model import ReportModel

    if (split is Split.none) == (model is None):
        typer.echo(
            "chorus: give either --model (evaluate it on DATA) or --split prompt|course", err=True
        )
        raise typer.Exit(2)
    with _user_errors():
        records = _read(data)
        if model is not None:
            trained = ReportModel.load(model)
            labelled = sum(record.label is not None for record in records)
            with _progress("scoring", labelled) as advance:
                result = evaluation_module.evaluate_model(
                    trained,
                    records,
                    n_jobs=jobs,
                    progress=advance,
                )
        elif split is Split.prompt:
            with _progress("cross-validating by prompt (models)", 2 * folds) as advance:
                result = evaluation_module.cross_validate_by_prompt(
                    records,
                    folds=folds,
                    random_state=seed,
                    n_jobs=jobs,
                    progress=advance,
                )
        else:
            n_courses = len({record.course for record in records})
            with _progress("leaving one course out (models)", 2 * n_courses) as advance:
                result = evaluation_module.leave_one_course_out(
                    records,
                    random_state=seed,
                    n_jobs=jobs,
                    progress=advance,
                )
        if plot is not None:
            evaluation_module.plot_auc_by_course([result], plot)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_evaluation(result)
    if plot is not None:
        typer.echo(f"plot written to {plot}", err=as_json)


def _print_evaluation(result: Evaluation) -> None:
    from reports_ml.evaluate import METHOD_LABELS

    methods = list(result.overall.auc)
    table = Table(title=f"ROC AUC ({result.split})")
    table.add_column("course")
    for column in ("reports", "correct", *(METHOD_LABELS.get(m, m) for m in methods)):
        table.add_column(column, justify="right")
    for group in [*result.courses, result.overall]:
        table.add_row(
            group.name,
            str(group.n_reports),
            str(group.n_correct),
            *("n/a" if math.isnan(group.auc[m]) else f"{group.auc[m]:.3f}" for m in methods),
        )
    Console().print(table)


@app.command()
def score(
    data: DataArgument,
    model: Annotated[Path, typer.Option("--model", help="trained model (.joblib)")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="JSON Lines file to write (default: stdout)"),
    ] = None,
    jobs: JobsOption = 1,
    skip_invalid: SkipInvalidOption = False,
) -> None:
    """Add a ``score`` (probability the answer should be accepted) to every record of DATA."""
    from reports_ml.model import ReportModel
    from reports_ml.staple import write_records

    with _user_errors():
        trained = ReportModel.load(model)
        records = _read(data, skip_invalid=skip_invalid)
        with _progress("scoring", len(records)) as advance:
            scores = trained.score(records, n_jobs=jobs, progress=advance)
    scored = (
        record.model_copy(update={"score": float(value)})
        for record, value in zip(records, scores.tolist(), strict=True)
    )
    if out is None:
        write_records(scored, sys.stdout)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as stream:
        count = write_records(scored, stream)
    typer.echo(f"wrote {count} scored reports to {out}")


# --- review service (import-staple, retrain, models list|promote) ---------------------------
from reports_ml.review_cli import import_staple, models_app, retrain  # noqa: E402

app.command("import-staple")(import_staple)
app.command("retrain")(retrain)
app.add_typer(models_app, name="models")
