"""A decoder that crashes or hangs costs one request a 503, never the API process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.decoder import STORE_ALLOWANCE_S, DecoderPool, WarmUp
from tests.ingest.faulty_decoders import (
    CRASH,
    HANG,
    KILL,
    crash_or_sanitize,
    hang_or_sanitize,
    killed_mid_decode_or_sanitize,
)
from tests.ingest.uploads import NOTHING, Mint, Recording, Stored, Upload

pytestmark = pytest.mark.usefixtures("catalog")


@pytest.fixture
def swap_decoder(app: FastAPI) -> Iterator[Callable[[DecoderPool], None]]:
    pools: list[DecoderPool] = []

    def swap(pool: DecoderPool) -> None:
        pool.start()
        pools.append(pool)
        app.state.decoder = pool

    yield swap
    for pool in pools:
        pool.shutdown()


def test_crashed_worker_is_replaced_and_the_next_upload_succeeds(
    client: TestClient,
    swap_decoder: Callable[[DecoderPool], None],
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    pool = DecoderPool(workers=1, task=crash_or_sanitize)
    swap_decoder(pool)
    response = upload(mint("learner-1"), CRASH + wav_bytes)
    assert response.status_code == 503
    assert response.json()["code"] == "decoder_unavailable"
    assert stored() == NOTHING
    assert pool.replacements == 1
    assert upload(mint("learner-2"), wav_bytes).status_code == 201
    assert stored() == Stored(objects=1, rows=1)
    assert client.get("/healthz").status_code == 200  # the API process lived on


def test_hanging_decode_times_out_and_the_next_upload_succeeds(
    swap_decoder: Callable[[DecoderPool], None],
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    pool = DecoderPool(workers=1, timeout_s=1.0, task=hang_or_sanitize)
    swap_decoder(pool)
    started = time.monotonic()
    response = upload(mint("learner-1"), HANG + wav_bytes)
    # The worker's own decode alarm ends it after 1 s, well before the job's overall limit.
    assert time.monotonic() - started < 1.0 + STORE_ALLOWANCE_S / 4
    assert response.status_code == 503
    assert response.json()["code"] == "decoder_unavailable"
    assert stored() == NOTHING
    assert upload(mint("learner-2"), wav_bytes).status_code == 201


def test_workers_are_recycled_after_max_tasks(
    swap_decoder: Callable[[DecoderPool], None],
    wav_bytes: bytes,
    recording: Recording,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    swap_decoder(DecoderPool(workers=1, max_tasks_per_child=2))
    for number in range(5):
        assert upload(mint(f"learner-{number}"), recording(number)).status_code == 201
    assert stored() == Stored(objects=5, rows=5)


def _timed(upload: Upload, token: str, audio: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    status = upload(token, audio).status_code
    return status, time.perf_counter() - started


def test_a_worker_killed_mid_decode_fails_only_its_own_upload(
    client: TestClient,
    swap_decoder: Callable[[DecoderPool], None],
    wav_bytes: bytes,
    recording: Recording,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    pool = DecoderPool(workers=2, task=killed_mid_decode_or_sanitize)
    swap_decoder(pool)
    before = [_timed(upload, mint(f"warm-{n}"), recording(n)) for n in range(6)]
    assert {status for status, _ in before} == {201}
    with ThreadPoolExecutor(max_workers=7) as threads:
        killed = threads.submit(upload, mint("learner-killed"), KILL + wav_bytes)
        time.sleep(0.1)  # the kill is in its worker; these run beside it and after it
        others = [threads.submit(upload, mint(f"learner-{n}"), recording(10 + n)) for n in range(6)]
        assert killed.result().status_code == 503
        assert killed.result().json()["code"] == "decoder_unavailable"
        assert [f.result().status_code for f in others] == [201] * 6
    assert pool.replacements == 1
    assert stored() == Stored(objects=12, rows=12)
    # The replacement was started in the background; the next uploads do not wait for it.
    after = [_timed(upload, mint(f"after-{n}"), recording(20 + n)) for n in range(6)]
    assert {status for status, _ in after} == {201}
    typical = statistics.median(seconds for _, seconds in before)
    assert statistics.median(seconds for _, seconds in after) < 3 * typical + 0.05
    assert client.get("/healthz").status_code == 200


def test_workers_are_warm_before_the_first_upload(
    client: TestClient,
    swap_decoder: Callable[[DecoderPool], None],
    app: FastAPI,
    wav_bytes: bytes,
    recording: Recording,
    upload: Upload,
    mint: Mint,
) -> None:
    """``start`` returns only once every worker has its engine, store and keys open, its
    statements compiled and its audio libraries loaded."""
    # The exercise's bucket is opened (a first upload's own extra work) by the app's workers.
    assert upload(mint("opener"), wav_bytes).status_code == 201
    settings = app.state.settings
    pool = DecoderPool(
        workers=2,
        warm_up=WarmUp(app.state.database.url, settings.storage_url, settings.key_store_url),
    )
    swap_decoder(pool)
    first = [_timed(upload, mint(f"first-{n}"), recording(n)) for n in range(2)]
    later = [_timed(upload, mint(f"later-{n}"), recording(10 + n)) for n in range(8)]
    assert {status for status, _ in first + later} == {201}
    typical = statistics.median(seconds for _, seconds in later)
    assert max(seconds for _, seconds in first) < 3 * typical + 0.05


def test_workers_are_recycled_in_the_background(
    swap_decoder: Callable[[DecoderPool], None],
    wav_bytes: bytes,
    recording: Recording,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    pool = DecoderPool(workers=2, max_tasks_per_child=3)
    swap_decoder(pool)
    for number in range(20):
        assert upload(mint(f"learner-{number}"), recording(number)).status_code == 201
    assert stored() == Stored(objects=20, rows=20)
    assert pool.recycled >= 4
    assert pool.replacements == 0
