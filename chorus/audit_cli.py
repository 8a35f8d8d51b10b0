"""The ``chorus audit`` command: the auditor's checks, run straight against database and store.

Exit status: 0 clean, 1 findings, 2 the audit could not run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from chorus.audit import explain, run_audit
from core.db import sqlite_file_path
from core.errors import ChorusError
from core.settings import get_settings
from policies.checks import AuditReport, CheckStatus

ROOT_COMMANDS = ("audit",)
EXIT_CLEAN, EXIT_FINDINGS, EXIT_FAILED = 0, 1, 2
_STATUS_WORDS = {
    CheckStatus.OK: "ok  ",
    CheckStatus.FAIL: "FAIL",
    CheckStatus.NOT_APPLICABLE: "n/a ",
}
REQUIRED_TABLES = ("audit_entries", "buckets", "pending_clips", "releases", "released_clips")


def audit(
    json_output: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    canary: Annotated[
        list[str] | None,
        typer.Option(
            "--canary",
            help="a string that must appear in no stored object, row or log file (repeatable)",
        ),
    ] = None,
    log_dir: Annotated[
        list[Path] | None,
        typer.Option("--log-dir", help="a log file or folder to scan for canaries (repeatable)"),
    ] = None,
) -> None:
    """Check every privacy invariant against the database and the store.

    Exits 0 when clean, 1 with findings, 2 when the audit could not run.
    """
    try:
        report = _run(canaries=canary or [], log_dirs=log_dir or [])
    except ChorusError as exc:
        _cannot_run(exc.detail, json_output)
    except SQLAlchemyError as exc:
        _cannot_run(f"the database could not be read ({type(exc).__name__})", json_output)
    if json_output:
        typer.echo(json.dumps(_as_json(report), indent=2))
    else:
        _print_human(report)
    raise typer.Exit(EXIT_CLEAN if report.ok else EXIT_FINDINGS)


def _run(*, canaries: list[str], log_dirs: list[Path]) -> AuditReport:
    import sqlalchemy as sa

    from core.db import Database
    from core.keystore import open_key_store
    from core.storage import open_store
    from policies.policy import load_policy

    settings = get_settings()
    policy = load_policy(settings.policy)
    _require_existing_sqlite(settings.database_url)
    for path in log_dirs:
        if not path.exists():
            raise ChorusError(f"log path {path} does not exist")
    store = open_store(settings.storage_url)
    store.check()
    database = Database(settings.database_url)
    try:
        database.check()
        present = set(sa.inspect(database.engine).get_table_names())
        missing = [table for table in REQUIRED_TABLES if table not in present]
        if missing:
            raise ChorusError(
                f"the database has no Chorus schema (missing {', '.join(missing)}); "
                "run `chorus db upgrade` first"
            )
        return run_audit(
            database=database,
            store=store,
            policy=policy,
            canaries=canaries,
            log_dirs=log_dirs,
            key_store=open_key_store(settings.key_store_url, database_url=settings.database_url),
        )
    finally:
        database.dispose()


def _require_existing_sqlite(url: str) -> None:
    """An audit reads; it must not create an empty SQLite file and call it clean. (A
    malformed URL passes: make_engine reports it with a clearer message.)"""
    database = sqlite_file_path(url)
    if database is not None and not Path(database).is_file():
        raise ChorusError(f"the SQLite database {database} does not exist")


def _cannot_run(detail: str, json_output: bool) -> NoReturn:
    if json_output:
        typer.echo(json.dumps({"ok": False, "error": detail}))
    typer.echo(f"chorus audit: could not run: {detail}", err=True)
    raise typer.Exit(EXIT_FAILED)


def _as_json(report: AuditReport) -> dict[str, object]:
    return {
        "ok": report.ok,
        "findings": [
            {
                "check": f.check,
                "invariant": f.invariant,
                "message": f.message,
                "subject": f.subject,
                "cause": explain(f.check).cause,
                "remedy": explain(f.check).remedy,
            }
            for f in report.findings
        ],
        "checks": [
            {
                "name": result.name,
                "invariants": list(result.invariants),
                "description": result.description,
                "findings": len(result.findings),
                "status": result.status.value,
                "not_applicable": result.not_applicable,
            }
            for result in report.results
        ],
    }


def _print_human(report: AuditReport) -> None:
    for result in report.results:
        status = _STATUS_WORDS[result.status]
        invariants = ",".join(result.invariants)
        typer.echo(f"{status} {result.name:<18} [{invariants}] {result.description}")
        if result.not_applicable is not None:
            typer.echo(f"       (not applicable: {result.not_applicable})")
        for finding in result.findings:
            explanation = explain(finding.check)
            typer.echo(f"       - {finding.check}: {finding.message}")
            typer.echo(f"         likely cause: {explanation.cause}")
            typer.echo(f"         remedy: {explanation.remedy}")
    total = len(report.findings)
    if total:
        typer.echo(f"{total} finding(s) in {len(report.results)} checks")
    else:
        typer.echo(f"clean: {len(report.results)} checks, no findings")
