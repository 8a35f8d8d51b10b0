"""Releases on SeaweedFS (S3): shards with ranges, presigned URLs at the public endpoint."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.auth import Role
from core.settings import Settings
from tests.aggregate.census import assert_each_released_once, take_census
from tests.aggregate.clips import Seed
from tests.aggregate.releases import release_now


def _public(url: str) -> str:
    """The same server under another name, as a researcher outside the deployment sees it."""
    return url.replace("127.0.0.1", "localhost")


@pytest.fixture
def settings(make_settings: Callable[..., Settings], s3_store_url: str) -> Settings:
    endpoint = parse_qs(urlsplit(s3_store_url).query)["endpoint_url"][0]
    return make_settings(storage_url=f"{s3_store_url}&public_endpoint_url={_public(endpoint)}")


def test_a_release_on_s3_serves_clips_shards_with_ranges_and_a_streamed_archive(
    app: FastAPI, client: TestClient, seed: Seed, auth: Callable[[Role], dict[str, str]]
) -> None:
    clips = seed(app.state.database, app.state.store, digit=6)
    (outcome,) = release_now(app).released
    assert_each_released_once(take_census(app.state.database, app.state.store), clips)
    researcher = auth(Role.RESEARCHER)
    manifest = client.get(f"/v1/releases/{outcome.release_id}", headers=researcher).json()
    first = manifest["clips"][0]
    # One clip is read out of its shard by range, through the API.
    response = client.get(
        f"/v1/releases/{outcome.release_id}/clips/{first['clip_id']}", headers=researcher
    )
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == first["sha256"]
    samples, rate = sf.read(io.BytesIO(response.content))
    assert rate == first["sample_rate"]
    assert len(samples) > 0

    (shard,) = manifest["shards"]
    shard_url = f"/v1/releases/{outcome.release_id}/files/{shard['name']}"
    head = client.head(shard_url, headers=researcher)
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == shard["size"]
    ranged = client.get(
        shard_url,
        headers={
            **researcher,
            "Range": f"bytes={first['offset']}-{first['offset'] + first['size'] - 1}",
        },
    )
    assert ranged.status_code == 206
    assert ranged.content == response.content
    # A presigned URL names the public endpoint, and works there.
    redirect = client.get(
        shard_url, params={"presigned": "true"}, headers=researcher, follow_redirects=False
    )
    assert redirect.status_code == 307
    location = redirect.headers["location"]
    assert location.startswith(_public(app.state.store.endpoint_url))
    assert "pending" not in location
    fetched = httpx.get(location, timeout=10)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == shard["sha256"]

    archive = client.get(f"/v1/releases/{outcome.release_id}/archive", headers=researcher)
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert len([n for n in tar.getnames() if n.endswith(".flac")]) == 5
