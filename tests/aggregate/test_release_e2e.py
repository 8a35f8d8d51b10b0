"""End to end over HTTP with real FSDD recordings: upload, the k threshold, the researcher API.

Digit = exercise, speaker = learner; the demo policy has k = 5.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
import soundfile as sf
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aggregate.buckets import key_name
from aggregate.jobs import run_release_cycle
from aggregate.tables import Bucket, PendingClip
from core.auth import Role
from ingest.consent import mint_token
from policies.audit import verify_chain
from policies.context import shard_members
from policies.tables import AuditEntry
from tests.aggregate.clips import SPEAKERS
from tests.aggregate.releases import release_now
from tests.archives import member_bytes
from tests.consent import ConsentKeys
from tests.keys import keys_for

Auth = Callable[[Role], dict[str, str]]


def long_enough(fsdd_dir: Path, digit: int, speaker: str, take: int) -> Path:
    """The first recording from ``take`` on that clears the policy's 0.3 s minimum."""
    for candidate in range(take, 50):
        path = fsdd_dir / f"{digit}_{speaker}_{candidate}.wav"
        if sf.info(path).duration >= 0.32:
            return path
    raise AssertionError(f"no recording of {digit} by {speaker} is long enough")


@pytest.fixture
def researcher(auth: Auth) -> dict[str, str]:
    return auth(Role.RESEARCHER)


@pytest.fixture
def upload(
    client: TestClient, auth: Auth, consent_keys: ConsentKeys, fsdd_dir: Path
) -> Callable[..., httpx2.Response]:
    """``upload(digit, speaker, take=0)``: POST /v1/clips of that FSDD recording."""
    usage = [{"exercise_id": f"digit-{d}", "learners": 500} for d in range(10)]
    response = client.put("/v1/exercises/usage", json=usage, headers=auth(Role.ADMIN))
    assert response.status_code == 200, response.text

    def post(digit: int, speaker: str, take: int = 0) -> httpx2.Response:
        token = mint_token(consent_keys.private_key, learner_id=f"learner-{speaker}")
        audio = long_enough(fsdd_dir, digit, speaker, take).read_bytes()
        return client.post(
            "/v1/clips",
            files=[
                (
                    "metadata",
                    (
                        None,
                        json.dumps({"exercise_id": f"digit-{digit}"}).encode(),
                        "application/json",
                    ),
                ),
                ("audio", ("clip.wav", audio, "audio/wav")),
            ],
            headers={"Authorization": f"Bearer {token}"},
        )

    return post


def pending_objects(app: FastAPI) -> list[str]:
    return list(app.state.store.list("pending/"))


def test_below_k_nothing_is_released_and_at_k_a_batch_appears(
    app: FastAPI,
    client: TestClient,
    upload: Callable[..., httpx2.Response],
    researcher: dict[str, str],
) -> None:
    for speaker in SPEAKERS[:4]:
        assert upload(3, speaker).status_code == 201
    assert release_now(app).released == []
    assert client.get("/v1/releases", headers=researcher).json()["items"] == []
    assert client.get("/v1/aggregates/digit-3", headers=researcher).status_code == 404
    assert len(pending_objects(app)) == 4

    assert upload(3, SPEAKERS[4]).status_code == 201
    report = release_now(app)
    assert [(r.exercise_id, r.clip_count, r.contributor_count) for r in report.released] == [
        ("digit-3", 5, 5)
    ]
    release_id = report.released[0].release_id

    page = client.get("/v1/releases", headers=researcher).json()
    assert [item["release_id"] for item in page["items"]] == [release_id]
    assert page["items"][0]["k"] == 5
    assert page["next_cursor"] is None

    manifest = client.get(f"/v1/releases/{release_id}", headers=researcher).json()
    assert manifest["exercise_id"] == "digit-3"
    assert manifest["statistics"]["clip_count"] == 5
    assert manifest["statistics"]["contributor_count"] == 5
    assert len(manifest["clips"]) == 5
    for entry in manifest["clips"]:
        response = client.get(
            f"/v1/releases/{release_id}/clips/{entry['clip_id']}", headers=researcher
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/flac"
        samples, rate = sf.read(io.BytesIO(response.content))
        assert rate == entry["sample_rate"] == 16000
        assert len(samples) / rate == pytest.approx(entry["duration_s"], abs=0.01)

    # The pending originals, their rows and the bucket key are gone.
    assert pending_objects(app) == []
    with app.state.database.session() as session:
        pending_rows = sa.select(sa.func.count()).select_from(PendingClip)
        assert session.execute(pending_rows).scalar_one() == 0
        bucket = session.execute(
            sa.select(Bucket).where(Bucket.release_id == release_id)
        ).scalar_one()
        assert bucket.state == "released"
        assert keys_for(app.state.database).get(key_name(bucket.id)) is None
        entries = (
            session.execute(sa.select(AuditEntry).where(AuditEntry.kind == "release"))
            .scalars()
            .all()
        )
        assert len(entries) == 1
        body = json.loads(entries[0].body)
        assert body["release_id"] == release_id
        assert body["contributor_count"] == 5
        assert body["k"] == 5
        assert body["policy_hash"] == app.state.policy.content_hash
        assert verify_chain(session).ok

    # The exercise's next clips go to a fresh bucket, which waits for k again.
    assert upload(3, SPEAKERS[5]).status_code == 201
    assert release_now(app).released == []
    assert len(pending_objects(app)) == 1
    aggregate = client.get("/v1/aggregates/digit-3", headers=researcher).json()
    assert aggregate["release_count"] == 1
    assert aggregate["statistics"]["clip_count"] == 5


def test_one_learner_cannot_fill_a_bucket(
    app: FastAPI,
    client: TestClient,
    upload: Callable[..., httpx2.Response],
    researcher: dict[str, str],
) -> None:
    codes = [upload(7, "theo", take).status_code for take in (0, 2, 4, 6, 8)]
    assert codes == [201, 409, 409, 409, 409]
    second = upload(7, "theo", 9)
    assert second.json()["code"] == "contribution_limit"
    for speaker in ("george", "jackson", "lucas"):
        assert upload(7, speaker).status_code == 201
    assert release_now(app).released == []  # 4 contributors, 4 clips: below k
    assert client.get("/v1/releases", headers=researcher).json()["items"] == []
    assert len(pending_objects(app)) == 4


def test_archive_is_the_whole_batch_as_tar(
    app: FastAPI,
    client: TestClient,
    upload: Callable[..., httpx2.Response],
    researcher: dict[str, str],
) -> None:
    for speaker in SPEAKERS[:5]:
        assert upload(5, speaker).status_code == 201
    (outcome,) = release_now(app).released
    response = client.get(f"/v1/releases/{outcome.release_id}/archive", headers=researcher)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-tar"
    assert int(response.headers["content-length"]) == len(response.content)
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        members = archive.getmembers()
        names = [m.name for m in members]
        manifest = json.loads(member_bytes(archive, "manifest.json"))
        flacs = {m.name: member_bytes(archive, m) for m in members[7:]}
    assert names[:7] == [
        "README.md",
        "metadata.csv",
        "metadata.jsonl",
        "validated.tsv",
        "clip_durations.tsv",
        "SHA256SUMS",
        "manifest.json",
    ]
    expected = [f"clips/{c['clip_id']}.flac" for c in manifest["clips"]]
    assert names[7:] == expected  # the manifest's shuffled order
    for data in flacs.values():
        samples, rate = sf.read(io.BytesIO(data))
        assert rate == 16000
        assert len(samples) > 0
    assert len({m.mtime for m in members}) == 1  # one release day for the whole batch


def test_researcher_routes_admit_only_researchers_and_404_unknown_ids(
    app: FastAPI,
    client: TestClient,
    upload: Callable[..., httpx2.Response],
    auth: Auth,
    researcher: dict[str, str],
) -> None:
    for speaker in SPEAKERS[:5]:
        assert upload(2, speaker).status_code == 201
    (outcome,) = release_now(app).released
    assert client.get("/v1/releases").status_code == 401
    for role in (Role.APP, Role.AUDITOR, Role.CONTRIBUTOR, Role.ADMIN):
        assert client.get("/v1/releases", headers=auth(role)).status_code == 403
    for path in (
        "/v1/releases/0123456789abcdef0123456789abcdef",
        f"/v1/releases/{outcome.release_id}/clips/0123456789abcdef0123456789abcdef",
        "/v1/releases/0123456789abcdef0123456789abcdef/archive",
        "/v1/aggregates/digit-9",
    ):
        response = client.get(path, headers=researcher)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"
    assert client.get("/v1/releases?cursor=%%%", headers=researcher).status_code == 422


def test_pending_clips_are_reachable_by_no_route(
    app: FastAPI,
    client: TestClient,
    upload: Callable[..., httpx2.Response],
    researcher: dict[str, str],
) -> None:
    for speaker in SPEAKERS[:4]:
        assert upload(4, speaker).status_code == 201
    for key in pending_objects(app):
        name = key.removeprefix("pending/").removesuffix(".flac")
        for path in (f"/v1/releases/{name}", f"/v1/releases/{name}/archive"):
            assert client.get(path, headers=researcher).status_code == 404
    with app.state.database.session() as session:
        bucket_id = session.execute(sa.select(Bucket.id)).scalar_one()
    assert client.get(f"/v1/releases/{bucket_id}", headers=researcher).status_code == 404


def test_releases_are_paged_with_a_cursor(
    app: FastAPI,
    client: TestClient,
    upload: Callable[..., httpx2.Response],
    researcher: dict[str, str],
) -> None:
    for digit in (0, 1, 6):
        for speaker in SPEAKERS[:5]:
            assert upload(digit, speaker).status_code == 201
    assert len(release_now(app).released) == 3
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/releases", params=params, headers=researcher).json()
        seen += [item["exercise_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == ["digit-0", "digit-1", "digit-6"]


class Stop(Exception):
    pass


def test_a_release_in_progress_is_invisible_until_finalized(
    app: FastAPI,
    client: TestClient,
    upload: Callable[..., httpx2.Response],
    researcher: dict[str, str],
) -> None:
    for speaker in SPEAKERS[:5]:
        assert upload(8, speaker).status_code == 201

    def stop_before_finalize(step: str) -> None:
        if step == "manifest":
            raise Stop

    with pytest.raises(Stop):
        run_release_cycle(
            database=app.state.database,
            keys=keys_for(app.state.database),
            store=app.state.store,
            policy=app.state.policy,
            interval_s=3600,
            checkpoint=stop_before_finalize,
        )
    shards = [k for k in app.state.store.list("releases/") if k.endswith(".tar")]
    assert len(shards) == 1  # the objects are there, yet nobody can read them
    release_id = shards[0].split("/")[1]
    clip_id = next(shard_members(app.state.store.get(shards[0])))[0]
    clip_id = clip_id.removeprefix("clips/").removesuffix(".flac")
    assert client.get("/v1/releases", headers=researcher).json()["items"] == []
    for path in (
        f"/v1/releases/{release_id}",
        f"/v1/releases/{release_id}/clips/{clip_id}",
        f"/v1/releases/{release_id}/archive",
        f"/v1/releases/{release_id}/files/metadata.csv",
        "/v1/aggregates/digit-8",
    ):
        assert client.get(path, headers=researcher).status_code == 404, path

    assert release_now(app).released[0].release_id == release_id
    assert (
        client.get(f"/v1/releases/{release_id}/clips/{clip_id}", headers=researcher).status_code
        == 200
    )
