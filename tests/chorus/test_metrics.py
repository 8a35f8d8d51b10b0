"""GET /metrics (P11) and the ``metrics_exposition`` audit check (P2, P4)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import prometheus_client.metrics
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import core.metrics
from chorus.audit import run_audit
from core.auth import Role
from ingest.metrics import UPLOADS

Auth = Callable[[Role], dict[str, str]]


def test_metrics_need_an_operator_or_auditor_key(client: TestClient, auth: Auth) -> None:
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.json()["code"] == "unauthorized"
    for role in (Role.RESEARCHER, Role.CONTRIBUTOR, Role.APP):
        refused = client.get("/metrics", headers=auth(role))
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden"
    for role in (Role.ADMIN, Role.AUDITOR):
        answer = client.get("/metrics", headers=auth(role))
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert "chorus_http_requests_total" in answer.text
        assert "chorus_ingest_uploads_total" in answer.text


def _metrics_findings(app: FastAPI) -> list[tuple[str, str]]:
    report = run_audit(database=app.state.database, store=app.state.store, policy=app.state.policy)
    (result,) = [r for r in report.results if r.name == "metrics_exposition"]
    assert result.invariants == ("P2", "P4")
    return [(finding.check, finding.invariant) for finding in result.findings]


def test_audit_passes_a_clean_exposition(app: FastAPI, client: TestClient, auth: Auth) -> None:
    assert client.get("/metrics", headers=auth(Role.ADMIN)).status_code == 200
    assert _metrics_findings(app) == []
    verify = client.get("/v1/audit/verify", headers=auth(Role.AUDITOR)).json()
    assert verify["checks"][-1]["name"] == "metrics_exposition"


@pytest.fixture
def created_series_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """prometheus_client's default: a ``*_created`` sample beside every counter."""
    monkeypatch.setattr(core.metrics, "disable_created_metrics", lambda: None)
    monkeypatch.setattr(prometheus_client.metrics, "_use_created", True)


@pytest.mark.usefixtures("client", "created_series_enabled")
def test_audit_finds_creation_times(app: FastAPI) -> None:
    findings = _metrics_findings(app)
    assert findings
    assert set(findings) == {("metrics_created_series", "P4")}


@pytest.fixture
def minor_counted() -> Iterator[None]:
    """An uploads counter that counted an age-gate refusal, as the service once did."""
    UPLOADS.labels(outcome="minor").inc()
    yield
    UPLOADS.remove("minor")


@pytest.mark.usefixtures("client", "minor_counted")
def test_audit_finds_a_counter_of_minors(app: FastAPI) -> None:
    assert _metrics_findings(app) == [("metrics_minor_counter", "P2")]
