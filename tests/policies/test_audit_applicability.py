"""The audit says which checks do not apply to a deployment (``n/a``, with the reason) and
explains every finding with its likely cause and remedy."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chorus.audit import AUDIT_CHECKS, EXPLANATIONS
from chorus.cli import app as chorus_app
from core.db import Database
from core.settings import Settings, reset_settings_cache
from core.storage import FileBlobStore, open_store
from policies.checks import CheckStatus, run_checks
from policies.policy import load_policy
from tests.policies.audited import AuditedState, RunAudit

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_CHECKS = {"file_modes", "sqlite_pragmas", "clip_table_rowid"}


def _statuses(database: Database, store: Any) -> dict[str, tuple[CheckStatus, str | None]]:
    checks = tuple(check for check in AUDIT_CHECKS if check.name in LOCAL_CHECKS)
    report = run_checks(checks, database=database, store=store, policy=load_policy("demo"))
    return {r.name: (r.status, r.not_applicable) for r in report.results}


@pytest.mark.postgres
@pytest.mark.s3
def test_sqlite_and_file_checks_are_not_applicable_on_postgres_and_s3(
    postgres_url: str, s3_store_url: str, tmp_path: Path
) -> None:
    database = Database(postgres_url)
    try:
        on_s3 = _statuses(database, open_store(s3_store_url))
        on_files = _statuses(database, FileBlobStore(tmp_path / "blobs"))
    finally:
        database.dispose()
    assert {name: status for name, (status, _) in on_s3.items()} == {
        name: CheckStatus.NOT_APPLICABLE for name in LOCAL_CHECKS
    }
    assert "PostgreSQL" in str(on_s3["sqlite_pragmas"][1])
    assert "file store" in str(on_s3["file_modes"][1])
    # A file store beside PostgreSQL still has files whose modes matter.
    assert on_files["file_modes"] == (CheckStatus.OK, None)
    assert on_files["sqlite_pragmas"][0] is CheckStatus.NOT_APPLICABLE


def test_sqlite_and_file_checks_apply_on_the_embedded_default(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'chorus.db'}")
    try:
        database.upgrade()
        statuses = _statuses(database, FileBlobStore(tmp_path / "blobs"))
    finally:
        database.dispose()
    assert statuses == {name: (CheckStatus.OK, None) for name in LOCAL_CHECKS}


def _yielded_finding_ids() -> dict[str, str]:
    """Every ``Finding("id", …)`` written in the source, with where."""
    found: dict[str, str] = {}
    for package in ("aggregate", "policies", "chorus", "ingest", "exercises", "reports_ml"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Finding"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    found[str(node.args[0].value)] = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
    return found


def test_every_finding_id_has_a_cause_and_a_remedy() -> None:
    yielded = _yielded_finding_ids()
    assert len(yielded) >= 20
    unexplained = {name: where for name, where in yielded.items() if name not in EXPLANATIONS}
    assert unexplained == {}
    assert sorted(set(EXPLANATIONS) - set(yielded)) == []  # no explanation of nothing
    for name, explanation in EXPLANATIONS.items():
        assert len(explanation.cause) > 30, name
        assert len(explanation.remedy) > 30, name


def test_a_finding_comes_with_its_cause_and_remedy_in_every_report(
    audited: AuditedState,
    settings: Settings,
    run_audit_cli: RunAudit,
    verify_api: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pending blob left readable by others, as a copy under a loose umask leaves it.
    blobs = Path(settings.storage_url.removeprefix("file://"))
    opened = blobs / audited.pending_keys[0]
    opened.chmod(0o644)

    result = run_audit_cli()
    assert result.exit_code == 1
    (finding,) = result.report["findings"]
    assert finding["check"] == "file_readable_by_others"
    assert "umask" in finding["cause"]
    assert "chmod" in finding["remedy"]
    checks = {check["name"]: check for check in result.report["checks"]}
    assert checks["file_modes"]["status"] == "fail"
    assert checks["sqlite_pragmas"]["status"] == "ok"

    body = verify_api()
    (api_finding,) = body["findings"]
    assert (api_finding["cause"], api_finding["remedy"]) == (finding["cause"], finding["remedy"])
    assert {check["status"] for check in body["checks"]} <= {"ok", "fail", "n/a"}

    # The human report prints them under the finding.
    human = CliRunner().invoke(chorus_app, ["audit"])
    reset_settings_cache()
    assert human.exit_code == 1
    assert "FAIL file_modes" in human.stdout
    assert f"likely cause: {finding['cause']}" in human.stdout
    assert f"remedy: {finding['remedy']}" in human.stdout


def test_pending_object_released_names_a_copy_as_its_cause_not_a_duplicate_upload() -> None:
    # Pending objects are sealed under keys of their own, and a bucket refuses a recording it
    # holds: two uploads of the same audio never share bytes, so only a copy raises it.
    explanation = EXPLANATIONS["pending_object_released"]
    assert "copied" in explanation.cause
    assert "never share" in explanation.cause
    assert "releases/" in explanation.remedy
