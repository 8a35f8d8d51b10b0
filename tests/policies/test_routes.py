"""The auditor API over a real release: policy, releases, the log with its chain status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from core.auth import Role
from core.settings import Settings
from tests.policies.audited import AuditedState

Auth = Callable[[Role], dict[str, str]]


def test_policy_shows_every_threshold_and_its_recorded_hash(
    client: TestClient, auth: Auth, app: object
) -> None:
    response = client.get("/v1/audit/policy", headers=auth(Role.AUDITOR))
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "demo"
    assert body["version"] == 1
    assert body["k"] == 5
    assert body["min_exercise_learners"] == 100
    assert body["min_contributor_age"] == 16
    assert body["accepted_consent_versions"] == ["speech-research-v1"]
    assert body["retention_cycles"] == 30
    assert body["output_sample_rate"] == 16000
    assert body["voice_anonymization"] == "none"
    assert (body["voice_mcadams_alpha_min"], body["voice_mcadams_alpha_max"]) == (0.7, 0.9)
    assert (body["voice_pitch_octaves_min"], body["voice_pitch_octaves_max"]) == (0.4, 0.8)
    assert (body["voice_formant_octaves_min"], body["voice_formant_octaves_max"]) == (0.1, 0.2)
    assert len(body["content_hash"]) == 64
    assert body["recorded_in_audit_log"] is True  # start-up recorded it


def test_a_changed_policy_is_recorded_at_the_next_start(
    make_settings: Callable[..., Settings],
) -> None:
    from chorus.app import create_app
    from core.auth import create_key

    def start(policy: str) -> list[dict[str, Any]]:
        app = create_app(make_settings(policy=policy))
        with TestClient(app) as client:
            with app.state.database.session() as session:
                key = create_key(session, role=Role.AUDITOR, name="auditor")
            page = client.get("/v1/audit/log", headers={"X-API-Key": key}).json()
        assert page["chain"]["ok"] is True
        return [e for e in page["items"] if e["kind"] == "policy_loaded"]

    assert [e["body"]["name"] for e in start("demo")] == ["demo"]
    assert [e["body"]["name"] for e in start("demo")] == ["demo"]  # unchanged: no new entry
    loads = start("default")
    assert [e["body"]["name"] for e in loads] == ["demo", "default"]
    assert loads[1]["body"]["policy"]["k"] == 25


def test_releases_list_counts_and_k(audited: AuditedState, auth: Auth) -> None:
    response = audited.client.get("/v1/audit/releases", headers=auth(Role.AUDITOR))
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 1
    assert page["offset"] == 0
    (release,) = page["items"]
    assert release["id"] == audited.release_id
    assert release["exercise_id"] == "digit-7"
    assert (release["clip_count"], release["contributor_count"]) == (6, 6)
    assert release["k_in_force"] == 5
    assert release["meets_k"] is True
    assert release["policy_hash"] == audited.policy.content_hash
    empty = audited.client.get(
        "/v1/audit/releases", params={"offset": 1}, headers=auth(Role.AUDITOR)
    ).json()
    assert empty["items"] == []
    assert empty["total"] == 1


def test_log_pages_and_reports_the_chain(audited: AuditedState, auth: Auth) -> None:
    headers = auth(Role.AUDITOR)
    first = audited.client.get("/v1/audit/log", params={"limit": 2}, headers=headers).json()
    assert [e["seq"] for e in first["items"]] == [1, 2]
    assert first["next_after"] == 2
    assert first["chain"]["ok"] is True
    kinds: list[str] = [e["kind"] for e in first["items"]]
    after = first["next_after"]
    while after is not None:
        page = audited.client.get(
            "/v1/audit/log", params={"after": after, "limit": 2}, headers=headers
        ).json()
        kinds += [e["kind"] for e in page["items"]]
        after = page["next_after"]
    assert len(kinds) == first["total"]
    assert kinds[0] == "policy_loaded"
    (release,) = [
        e
        for e in audited.client.get("/v1/audit/log", headers=headers).json()["items"]
        if e["kind"] == "release"
    ]
    assert release["body"]["release_id"] == audited.release_id
    assert release["body"]["contributor_count"] == 6
    assert release["body"]["k"] == 5
    assert set(release) == {"seq", "kind", "cycle", "day", "body", "prev_hash", "hash"}

    audited.sql("UPDATE audit_entries SET kind = 'purge' WHERE kind = 'release'")
    broken = audited.client.get("/v1/audit/log", headers=headers).json()["chain"]
    assert broken["ok"] is False
    assert broken["first_broken_seq"] == release["seq"]


def test_verify_lists_checks_and_their_invariants(audited: AuditedState, auth: Auth) -> None:
    body = audited.client.get("/v1/audit/verify", headers=auth(Role.AUDITOR)).json()
    assert body["ok"] is True
    invariants = {inv for check in body["checks"] for inv in check["invariants"]}
    assert invariants >= {"P3", "P4", "P6", "P7", "P8", "P10"}
    assert all(check["findings"] == 0 for check in body["checks"])
