"""The upload contract is public, follows the policy in force and matches what is accepted."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.audio import MAX_CHANNELS
from tests.ingest.phone_formats import PHONE_FORMATS


def test_requirements_need_no_key_and_follow_the_policy(client: TestClient, app: FastAPI) -> None:
    response = client.get("/v1/clips/requirements")
    assert response.status_code == 200
    needs = response.json()
    policy = app.state.policy
    assert needs["max_upload_bytes"] == policy.max_upload_bytes
    assert (needs["min_duration_s"], needs["max_duration_s"]) == (
        policy.min_duration_s,
        policy.max_duration_s,
    )
    assert (needs["min_sample_rate_hz"], needs["max_sample_rate_hz"]) == (
        policy.min_sample_rate,
        policy.max_sample_rate,
    )
    assert needs["max_channels"] == MAX_CHANNELS
    assert needs["min_exercise_learners"] == policy.min_exercise_learners
    assert needs["consent_versions"] == list(policy.accepted_consent_versions)
    assert needs["consent_scope"] == "speech-research"
    containers = {f["container"] for f in needs["formats"]}
    assert {"MP4 / M4A", "WebM", "3GP / AMR", "Ogg", "CAF", "WAV"} <= containers


def test_every_tested_format_is_listed_with_its_media_type(client: TestClient) -> None:
    listed = {
        media_type
        for entry in client.get("/v1/clips/requirements").json()["formats"]
        for media_type in entry["media_types"]
    }
    assert {spec.media_type for spec in PHONE_FORMATS.values()} <= listed


def test_the_upload_operation_describes_the_same_contract(client: TestClient, app: FastAPI) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/clips"]["post"]
    description = operation["description"]
    policy = app.state.policy
    assert f"{policy.max_upload_bytes:,} bytes" in description
    assert f"{policy.min_duration_s}–{policy.max_duration_s} s" in description
    assert f"{policy.min_sample_rate}–{policy.max_sample_rate} Hz" in description
    assert f"{policy.min_exercise_learners:,} learners" in description
    for version in policy.accepted_consent_versions:
        assert version in description
    for container in ("MP4 / M4A", "WebM", "3GP / AMR", "CAF"):
        assert container in description
    assert "/v1/clips/requirements" in description


def test_the_client_guide_says_what_to_do_for_every_upload_problem(client: TestClient) -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "clients.md").read_text()
    operation = client.get("/openapi.json").json()["paths"]["/v1/clips"]["post"]
    codes = {
        code
        for response in operation["responses"].values()
        for content in response.get("content", {}).values()
        for code in content.get("examples", {})
    }
    assert {"unsupported_audio", "no_speech", "contribution_limit"} <= codes
    missing = sorted(code for code in codes if f"`{code}`" not in guide)
    assert missing == []
