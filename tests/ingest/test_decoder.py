"""A decoder that crashes or hangs costs one request a 503, never the API process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.decoder import STORE_ALLOWANCE_S, DecoderPool
from tests.ingest.conftest import NOTHING, Mint, Stored, Upload
from tests.ingest.faulty_decoders import CRASH, HANG, crash_or_sanitize, hang_or_sanitize

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
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    swap_decoder(DecoderPool(workers=1, max_tasks_per_child=2))
    for number in range(5):
        assert upload(mint(f"learner-{number}"), wav_bytes).status_code == 201
    assert stored() == Stored(objects=5, rows=5)
