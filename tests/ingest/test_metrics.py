"""What the ingest counters expose (P2, P4): no creation times, and nothing of a minor's attempt.

The exposition is read as ``/metrics`` serves it, with an operator key.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from core.auth import Role
from core.metrics import render_metrics
from tests.ingest.uploads import Mint, Upload

pytestmark = pytest.mark.usefixtures("catalog")
Auth = Callable[[Role], dict[str, str]]


def test_no_creation_time_after_uploads_and_withdrawals(
    client: TestClient, auth: Auth, upload: Upload, mint: Mint, wav_bytes: bytes
) -> None:
    token = mint("learner-created")
    assert upload(token, wav_bytes).status_code == 201
    assert upload(mint("learner-other"), wav_bytes, {"exercise_id": "rare-1"}).status_code == 422
    withdrawal = client.post(
        "/v1/consent/withdrawals", headers={"Authorization": f"Bearer {token}"}
    )
    assert withdrawal.json() == {"withdrawn": 1}

    exposition = client.get("/metrics", headers=auth(Role.ADMIN)).text
    assert 'chorus_ingest_uploads_total{outcome="accepted"}' in exposition
    assert "chorus_ingest_withdrawn_clips_total" in exposition
    assert [line for line in exposition.splitlines() if "_created" in line] == []


@pytest.mark.parametrize("claims", [{"age": 12}, {"child": True, "age": 30}, {"age": None}])
def test_a_minors_upload_changes_no_metric(
    claims: dict[str, object], upload: Upload, mint: Mint, wav_bytes: bytes
) -> None:
    assert upload(mint("learner-adult"), wav_bytes).status_code == 201  # some counts to keep
    before = render_metrics()[0]
    response = upload(
        mint("learner-young", **claims), wav_bytes, {"exercise_id": "digit-7", "user_id": "young"}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "minor"
    after = render_metrics()[0]
    assert after == before
    assert b'"minor"' not in after
