"""A realistic audited state: real FSDD clips sanitized, pending, and one batch released.

Six learners record ``digit-7`` (k = 5 under the demo policy), so the release job releases it;
three learners record ``digit-3``, which stays pending. ``run_audit_cli`` runs ``chorus audit``
against that state with the same ``CHORUS_*`` settings the service uses. The state and the
audit's result are in ``tests/policies/audited.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from core.auth import Role
from core.settings import Settings, reset_settings_cache
from tests.policies.audited import AuditedState, CliResult, RunAudit, build_audited_state


@pytest.fixture
def audited(client: TestClient, app: FastAPI, settings: Settings, fsdd_dir: Path) -> AuditedState:
    return build_audited_state(app, client, settings, fsdd_dir)


@pytest.fixture
def run_audit_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunAudit]:
    """``chorus audit --json [args]`` against ``settings`` (overridable per call)."""

    def run(*args: str, **overrides: str) -> CliResult:
        from chorus.cli import app as chorus_app

        values = {
            "CHORUS_DATABASE_URL": settings.database_url,
            "CHORUS_STORAGE_URL": settings.storage_url,
            "CHORUS_POLICY": settings.policy,
        }
        values.update({f"CHORUS_{key.upper()}": value for key, value in overrides.items()})
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        reset_settings_cache()
        result = CliRunner().invoke(chorus_app, ["audit", "--json", *args])
        stderr = result.stderr
        if result.exception is not None:
            stderr += f"\n{type(result.exception).__name__}: {result.exception}"
        return CliResult(result.exit_code, result.stdout, stderr)

    yield run
    reset_settings_cache()


@pytest.fixture
def verify_api(audited: AuditedState, auth: Callable[[Role], dict[str, str]]) -> Callable[[], Any]:
    """``GET /v1/audit/verify`` as the auditor; returns the JSON body (asserting 200)."""

    def call() -> Any:
        response = audited.client.get("/v1/audit/verify", headers=auth(Role.AUDITOR))
        assert response.status_code == 200, response.text
        return response.json()

    return call
