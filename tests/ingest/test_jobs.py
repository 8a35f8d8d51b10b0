"""The orphan sweeper removes pending objects without rows, but never one mid-upload."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI

from ingest.jobs import OrphanSweeper
from tests.ingest.uploads import Mint, Stored, Upload
from tests.keys import keys_for


@pytest.mark.usefixtures("catalog")
def test_orphans_go_on_the_second_pass_and_clips_with_rows_stay(
    app: FastAPI, wav_bytes: bytes, upload: Upload, mint: Mint, stored: Callable[[], Stored]
) -> None:
    assert upload(mint(), wav_bytes).status_code == 201
    store = app.state.store
    store.put("pending/orphan.flac", b"fLaC")
    sweeper = OrphanSweeper(database=app.state.database, store=store)

    # First pass: the orphan might be an upload whose row is not committed yet.
    assert sweeper.run() == 0
    assert stored() == Stored(objects=2, rows=1)
    # An object written between passes is only a suspect on the next pass.
    store.put("pending/late.flac", b"fLaC")
    assert sweeper.run() == 1
    assert not store.exists("pending/orphan.flac")
    assert store.exists("pending/late.flac")
    assert sweeper.run() == 1
    assert stored() == Stored(objects=1, rows=1)


def test_object_whose_row_arrives_between_passes_is_kept(app: FastAPI) -> None:
    from aggregate.buckets import current_open_bucket, insert_pending_row

    store = app.state.store
    database = app.state.database
    database.upgrade()
    sweeper = OrphanSweeper(database=database, store=store)
    store.put("pending/slow.flac", b"CHS1 sealed")
    assert sweeper.run() == 0
    bucket = current_open_bucket(database, "digit-1", keys=keys_for(database))
    with database.connection(write=True) as connection:
        insert_pending_row(
            connection,
            {
                "id": "slow",
                "bucket_id": bucket.id,
                "tag": "tag",
                "object_key": "pending/slow.flac",
                "recording_tag": "recording",
                "sealed_facts": b"CHS1 sealed",
                "request_digest": None,
                "max_slots": 1,
            },
        )
    assert sweeper.run() == 0
    assert store.exists("pending/slow.flac")


def test_a_failed_row_removes_the_object_at_once(
    app: FastAPI, wav_bytes: bytes, stored: Callable[[], Stored]
) -> None:
    from core.errors import ContributionLimit
    from ingest import service
    from ingest.audio import sanitize_audio
    from ingest.consent import Consent

    app.state.database.upgrade()
    policy = app.state.policy
    clip = sanitize_audio(wav_bytes, service.audio_limits(policy))
    consent = Consent(learner_id="l", consent_version="speech-research-v1", age=30, child=False)
    kwargs = {
        "database": app.state.database,
        "store": app.state.store,
        "policy": policy,
        "consent": consent,
        "exercise_id": "digit-1",
        "clip": clip,
        "keys": keys_for(app.state.database),
    }
    service.store_clip(**kwargs)
    with pytest.raises(ContributionLimit):
        service.store_clip(**kwargs)
    assert stored() == Stored(objects=1, rows=1)
