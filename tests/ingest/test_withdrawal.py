"""POST /v1/consent/withdrawals removes every pending clip of the learner (P9)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from policies.audit import verify_chain
from policies.tables import AuditEntry
from tests.ingest.uploads import Mint, Recording, Stored, Upload

pytestmark = pytest.mark.usefixtures("catalog")


def test_withdrawal_removes_the_learners_clips_in_every_bucket(
    client: TestClient,
    app: FastAPI,
    wav_bytes: bytes,
    recording: Recording,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    token = mint("leaving")
    for exercise in ("digit-1", "digit-2", "digit-3"):
        assert upload(token, wav_bytes, {"exercise_id": exercise}).status_code == 201
    assert upload(mint("staying"), recording(1), {"exercise_id": "digit-1"}).status_code == 201
    assert stored() == Stored(objects=4, rows=4)

    response = client.post("/v1/consent/withdrawals", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"withdrawn": 3}
    assert stored() == Stored(objects=1, rows=1)

    again = client.post("/v1/consent/withdrawals", headers={"Authorization": f"Bearer {token}"})
    assert again.json() == {"withdrawn": 0}
    # The withdrawn token stores nothing more (until it expires) ...
    refused = upload(token, wav_bytes, {"exercise_id": "digit-1"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "consent_withdrawn"
    assert stored() == Stored(objects=1, rows=1)
    # ... but having withdrawn, the learner may contribute again later with a new consent.
    assert (
        upload(mint("leaving", ttl_s=1800), wav_bytes, {"exercise_id": "digit-1"}).status_code
        == 201
    )

    with app.state.database.session() as session:
        entries = session.query(AuditEntry).filter(AuditEntry.kind == "withdrawal").all()
        assert [json.loads(e.body) for e in entries] == [{"clips_removed": 3}, {"clips_removed": 0}]
        assert all("leaving" not in e.body for e in entries)
        assert verify_chain(session).ok


@pytest.mark.parametrize(("claims", "status"), [({"ttl_s": -600}, 401), ({"scope": "other"}, 403)])
def test_withdrawal_needs_a_valid_token(
    claims: dict[str, object],
    status: int,
    client: TestClient,
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    assert upload(mint("learner-1"), wav_bytes).status_code == 201
    bad = mint("learner-1", **claims)
    response = client.post("/v1/consent/withdrawals", headers={"Authorization": f"Bearer {bad}"})
    assert response.status_code == status
    assert client.post("/v1/consent/withdrawals").status_code == 401
    assert stored() == Stored(objects=1, rows=1)
