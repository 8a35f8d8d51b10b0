"""An upload whose object write hits a full or read-only medium is 507 ``storage_full`` or
503 ``storage_unavailable`` with ``Retry-After``, and leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.storage import TEMP_PREFIX
from ingest.decoder import DecoderPool
from tests.ingest.faulty_decoders import DISK_FULL, READ_ONLY, storage_fault_or_sanitize
from tests.ingest.uploads import NOTHING, Mint, Stored, Upload

pytestmark = pytest.mark.usefixtures("catalog")


@pytest.fixture
def faulty_pool(app: FastAPI, client: TestClient) -> Iterator[DecoderPool]:
    pool = DecoderPool(workers=1, task=storage_fault_or_sanitize)
    pool.start()
    app.state.decoder = pool
    yield pool
    pool.shutdown()


@pytest.mark.parametrize(
    ("marker", "status", "code"),
    [(DISK_FULL, 507, "storage_full"), (READ_ONLY, 503, "storage_unavailable")],
)
def test_upload_on_a_failing_medium(
    app: FastAPI,
    faulty_pool: DecoderPool,
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
    marker: bytes,
    status: int,
    code: str,
) -> None:
    response = upload(mint("learner-1"), marker + wav_bytes)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.headers["content-type"] == "application/problem+json"
    # A 503 and a full store (507) say when to retry; a refusal of the upload does not.
    assert ("retry-after" in response.headers) == (status in (503, 507))
    if status == 503:
        assert int(response.headers["retry-after"]) > 0
    assert stored() == NOTHING
    # No temporary file of the failed write was left in the store's folders.
    assert [p for p in app.state.store.root.rglob(f"{TEMP_PREFIX}*")] == []
    # The fault was one write's: the next upload is stored, by the same worker.
    assert upload(mint("learner-2"), wav_bytes).status_code == 201
    assert stored() == Stored(objects=1, rows=1)
