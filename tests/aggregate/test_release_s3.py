"""Releases on SeaweedFS (S3): clips are handed out as short-lived presigned redirects."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

import httpx
import pytest
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aggregate.jobs import run_release_cycle
from core.auth import Role
from core.settings import Settings
from tests.aggregate.conftest import Seed, assert_each_released_once, take_census
from tests.keys import keys_for


@pytest.fixture
def settings(make_settings: Callable[..., Settings], s3_store_url: str) -> Settings:
    return make_settings(storage_url=s3_store_url)


def test_a_release_on_s3_serves_presigned_redirects_and_a_streamed_archive(
    app: FastAPI, client: TestClient, seed: Seed, auth: Callable[[Role], dict[str, str]]
) -> None:
    clips = seed(app.state.database, app.state.store, digit=6)
    (outcome,) = run_release_cycle(
        database=app.state.database,
        keys=keys_for(app.state.database),
        store=app.state.store,
        policy=app.state.policy,
        interval_s=3600,
    ).released
    assert_each_released_once(take_census(app.state.database, app.state.store), clips)
    researcher = auth(Role.RESEARCHER)
    manifest = client.get(f"/v1/releases/{outcome.release_id}", headers=researcher).json()
    clip_id = manifest["clips"][0]["clip_id"]
    response = client.get(
        f"/v1/releases/{outcome.release_id}/clips/{clip_id}",
        headers=researcher,
        follow_redirects=False,
    )
    assert response.status_code == 307
    location = response.headers["location"]
    assert "pending" not in location
    fetched = httpx.get(location, timeout=10)
    assert fetched.status_code == 200
    samples, rate = sf.read(io.BytesIO(fetched.content))
    assert rate == manifest["clips"][0]["sample_rate"]
    assert len(samples) > 0

    archive = client.get(f"/v1/releases/{outcome.release_id}/archive", headers=researcher)
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert len([n for n in tar.getnames() if n.endswith(".flac")]) == 5
