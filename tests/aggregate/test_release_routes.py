"""The researcher's routes named as the release names things: clips by their member name, and
presigned URLs refused plainly where the store makes none."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.auth import Role
from tests.aggregate.clips import Seed
from tests.aggregate.releases import release_now
from tests.archives import member_bytes


def _released(app: FastAPI, seed: Seed) -> str:
    seed(app.state.database, app.state.store, digit=4)
    (outcome,) = release_now(app).released
    return outcome.release_id


def test_a_clip_is_served_under_its_member_name_in_the_archive(
    app: FastAPI, client: TestClient, seed: Seed, auth: Callable[[Role], dict[str, str]]
) -> None:
    release_id = _released(app, seed)
    researcher = auth(Role.RESEARCHER)
    archive = client.get(f"/v1/releases/{release_id}/archive", headers=researcher)
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        members = {
            m.name: member_bytes(tar, m) for m in tar.getmembers() if m.name.startswith("clips/")
        }
    assert len(members) == 5
    for name, data in members.items():
        member = name.removeprefix("clips/")  # "<id>.flac"
        by_member = client.get(f"/v1/releases/{release_id}/clips/{member}", headers=researcher)
        assert by_member.status_code == 200, by_member.text
        assert by_member.content == data
        assert f'filename="{member}"' in by_member.headers["content-disposition"]
        by_id = client.get(
            f"/v1/releases/{release_id}/clips/{member.removesuffix('.flac')}", headers=researcher
        )
        assert by_id.content == data
    unknown = client.get(f"/v1/releases/{release_id}/clips/nope.flac", headers=researcher)
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"


def test_presigned_on_the_file_store_is_a_clear_501_not_a_stream(
    app: FastAPI, client: TestClient, seed: Seed, auth: Callable[[Role], dict[str, str]]
) -> None:
    release_id = _released(app, seed)
    researcher = auth(Role.RESEARCHER)
    url = f"/v1/releases/{release_id}/files/shards/shard-00000.tar"
    refused = client.get(
        url, params={"presigned": "true"}, headers=researcher, follow_redirects=False
    )
    assert refused.status_code == 501
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["code"] == "presigned_unsupported"
    assert "without ?presigned=true" in problem["detail"]
    # Without the flag the same file streams as before.
    streamed = client.get(url, headers=researcher)
    assert streamed.status_code == 200
    assert streamed.headers["content-type"] == "application/x-tar"


def test_the_json_lines_metadata_is_served_as_json_lines(
    app: FastAPI, client: TestClient, seed: Seed, auth: Callable[[Role], dict[str, str]]
) -> None:
    release_id = _released(app, seed)
    response = client.get(
        f"/v1/releases/{release_id}/files/metadata.jsonl", headers=auth(Role.RESEARCHER)
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonl")
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert len(rows) == 5
    assert all(row["file_name"].startswith("clips/") for row in rows)
