"""HTTP routes of the ingest domain: upload and withdrawal.

The upload route follows ARCHITECTURE §3 steps 1–7 in order and stores nothing on any refusal.
It reads the multipart body itself, as a bounded stream (``ingest.multipart``), so an
oversized body is refused before it is read in full and nothing is spooled to disk.

Only cheap work runs on the event loop (token check, multipart parsing, the in-memory
eligibility answer). The rest (decode, re-encode, object write, the row's transaction) is one
job awaited on the upload worker pool (``ingest.decoder``), so uploads overlap one another's
waits for fsync, the decoder and the database, and the API process's interpreter is left to
serving requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header, Request, Security
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from core.db import Database
from core.deps import DatabaseDep, KeyStoreDep, StoreDep
from core.errors import (
    ChorusError,
    ClientClosedRequest,
    ContributionLimit,
    DatabaseUnavailable,
    DecoderUnavailable,
    DuplicateRecording,
    ExerciseNotEligible,
    IdempotencyKeyBusy,
    IdempotencyKeyReused,
    InvalidAudio,
    InvalidMetadata,
    MinorRefused,
    NoSpeech,
    PayloadTooLarge,
    StorageFull,
    StorageUnavailable,
    Unavailable,
    UnsupportedAudio,
    UploadTimeout,
)
from core.handlers import problem_responses
from core.idempotency import (
    Claim,
    IdempotencyStore,
    IdempotentUpload,
    check_key,
    idempotent_upload,
)
from core.keystore import KeyStore
from core.metrics import leave_uncounted
from core.text import StorableText
from exercises.catalog import eligibility_cache
from ingest import metrics, service
from ingest.consent import bearer_token, check_age, verify_consent
from ingest.decoder import DecoderPool
from ingest.deps import (
    CONSENT_TOKEN,
    ConsentKeyDep,
    DecoderDep,
    IdempotencyDep,
    PolicyDep,
    StorageUrlDep,
    UploadDatabaseDep,
)
from ingest.models import (
    ClipAcceptedRead,
    ParsedMetadata,
    UploadRequirementsRead,
    WithdrawalRead,
    parse_clip_metadata,
)
from ingest.multipart import MultipartUpload, check_content_length
from ingest.requirements import upload_requirements
from ingest.service import UploadJob
from policies.policy import Policy

router = APIRouter(tags=["ingest"])
_logger = logging.getLogger("chorus.ingest")
# A body must keep arriving (idle) and be complete (total) within these; read at call time.
UPLOAD_IDLE_TIMEOUT_S = 15.0
UPLOAD_TOTAL_TIMEOUT_S = 120.0

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["audio", "metadata"],
                    "properties": {
                        "audio": {
                            "type": "string",
                            "format": "binary",
                            "description": "the recording (formats and limits: "
                            "GET /v1/clips/requirements)",
                        },
                        "metadata": {
                            "type": "string",
                            "description": 'JSON object: {"exercise_id": "..."}; '
                            "any other field is dropped unread",
                        },
                    },
                }
            }
        },
    }
}


@router.get(
    "/v1/clips/requirements",
    response_model=UploadRequirementsRead,
    summary="What an upload must be: formats, size, length, rates, exercise and consent",
)
async def get_upload_requirements(policy: PolicyDep) -> UploadRequirementsRead:
    return upload_requirements(policy)


@router.post(
    "/v1/clips",
    status_code=201,
    response_model=ClipAcceptedRead,
    summary="Upload a consented recording of an exercise",
    openapi_extra=_UPLOAD_BODY,
    dependencies=[Security(CONSENT_TOKEN)],
    responses=problem_responses(
        MinorRefused,
        UploadTimeout,
        ContributionLimit,
        DuplicateRecording,
        IdempotencyKeyBusy,
        IdempotencyKeyReused,
        PayloadTooLarge,
        UnsupportedAudio,
        InvalidMetadata,
        ExerciseNotEligible,
        InvalidAudio,
        NoSpeech,
        Unavailable,
        DecoderUnavailable,
        DatabaseUnavailable,
        StorageUnavailable,
        StorageFull,
    ),
)
async def upload_clip(
    request: Request,
    public_key: ConsentKeyDep,
    policy: PolicyDep,
    database: UploadDatabaseDep,
    storage_url: StorageUrlDep,
    decoder: DecoderDep,
    idempotency: IdempotencyDep,
    keys: KeyStoreDep,
    idempotency_key: Annotated[
        StorableText | None,
        Header(
            alias="Idempotency-Key",
            description="A fresh random value per upload (8–128 of letters, digits, '._:-'). "
            "A retry of the same upload with the same key gets the first answer, 201, instead "
            "of 409 contribution_limit, and nothing is stored twice; the same key with another "
            "exercise or other audio answers 422 idempotency_key_reused. Only digests are kept.",
        ),
    ] = None,
) -> ClipAcceptedRead:
    claimed: IdempotentUpload | None = None
    handed_over = False
    try:
        # 1–2: consent and age, from the headers alone.
        consent = verify_consent(
            bearer_token(request.headers.getlist("authorization")),
            public_key=public_key,
            policy=policy,
        )
        check_age(consent, policy=policy)
        key = check_key(idempotency_key) if idempotency_key is not None else None
        check_content_length(
            request.headers.get("content-length"), max_upload_bytes=policy.max_upload_bytes
        )
        # 3–4 as soon as the metadata part is in, 5 once the audio is.
        upload = MultipartUpload(
            request.headers.get("content-type"), max_upload_bytes=policy.max_upload_bytes
        )
        parsed: ParsedMetadata | None = None
        async for chunk in _body_chunks(request):
            upload.feed(chunk)
            if parsed is None and upload.metadata is not None:
                parsed = await _admit_metadata(upload.metadata, database, policy)
        parts = upload.parts()
        if parsed is None:
            parsed = await _admit_metadata(parts.metadata, database, policy)
        exercise_id = parsed.metadata.exercise_id
        if key is not None:
            # The key binds to the learner and to this request (exercise and audio).
            idempotent = _KeyedUpload(key, consent.learner_id, exercise_id, parts.audio)
            claimed = await _claim(idempotency, database, keys, idempotent)
            if claimed is None:
                metrics.UPLOADS.labels(outcome="accepted").inc()
                return ClipAcceptedRead()  # the first answer, which the client lost
        # 5–7 in a worker: sanitize, contribution cap, object, then row (whose transaction
        # re-checks step 4 and records the key's request). Shielded with the key's outcome: a
        # client that hangs up does not cut them short, so its retry finds the first answer.
        job = decoder.upload_job(
            audio=parts.audio,
            exercise_id=exercise_id,
            consent=consent,
            policy=policy,
            database_url=database.url,
            storage_url=storage_url,
            key_store_url=request.app.state.settings.key_store_url,
            request_id=claimed.request_id if claimed is not None else None,
        )
        handed_over = True
        await asyncio.shield(asyncio.ensure_future(_store(decoder, job, idempotency, claimed)))
    except MinorRefused:
        # A minor's attempt is neither stored, counted nor logged (P2).
        leave_uncounted(request.scope)
        raise
    except BaseException as exc:
        if claimed is not None and not handed_over:  # a retry with this key runs afresh
            await _release(idempotency, claimed)
        if isinstance(exc, ChorusError):
            metrics.UPLOADS.labels(outcome=exc.code).inc()
        raise
    metrics.UPLOADS.labels(outcome="accepted").inc()
    return ClipAcceptedRead()


async def _store(
    decoder: DecoderPool,
    job: UploadJob,
    idempotency: IdempotencyStore,
    claimed: IdempotentUpload | None,
) -> None:
    """The upload's worker steps, then its Idempotency-Key marked done (or freed on failure).

    Once the worker's transaction committed the answer is 201, whatever the key store says:
    an entry left unmarked is settled by the row's own record of the request.
    """
    try:
        await decoder.sanitize_and_store(job)
    except BaseException:
        if claimed is not None:
            await _release(idempotency, claimed)
        raise
    if claimed is not None:
        await _complete(idempotency, claimed)


async def _complete(idempotency: IdempotencyStore, upload: IdempotentUpload) -> None:
    """Mark a stored upload's entry done; a store that fails leaves it busy, which a retry
    settles from the bucket's record of the request (and marks done then)."""
    try:
        await run_in_threadpool(idempotency.complete, upload)
    except ChorusError as exc:
        _logger.warning(
            "upload stored; its idempotency entry not marked done", extra={"code": exc.code}
        )


async def _release(idempotency: IdempotencyStore, claimed: IdempotentUpload) -> None:
    """Free the claim of a failed upload; a store that fails to do so leaves the entry to its
    owner check and its expiry, and the failure the client sees stays the upload's own."""
    try:
        await run_in_threadpool(idempotency.release, claimed)
    except ChorusError as exc:
        _logger.warning("idempotency entry not released", extra={"code": exc.code})


@dataclass(frozen=True)
class _KeyedUpload:
    """An upload sent with an Idempotency-Key, before its digests are made."""

    key: str
    learner_id: str
    exercise_id: str
    audio: bytes

    def claim(self, idempotency: IdempotencyStore) -> tuple[IdempotentUpload, Claim]:
        """Its digests (hashing the audio) and its claim: one trip to the thread pool."""
        upload = idempotent_upload(
            self.key, learner_id=self.learner_id, exercise_id=self.exercise_id, audio=self.audio
        )
        return upload, idempotency.claim(upload)


async def _claim(
    idempotency: IdempotencyStore,
    database: Database,
    keys: KeyStore,
    request: _KeyedUpload,
) -> IdempotentUpload | None:
    """The upload, now holding its key, when it should run; None when it was stored before."""
    upload, claim = await run_in_threadpool(request.claim, idempotency)
    exercise_id = request.exercise_id
    if claim is Claim.REUSED:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was sent before with another exercise or other audio; "
            "send a fresh key with each new upload"
        )
    if claim is Claim.DONE:
        return None
    if claim is Claim.BUSY:
        # A first request still running, or one that stored its row and could not mark its
        # entry: the bucket's own record tells them apart.
        stored = await run_in_threadpool(
            lambda: service.is_stored(
                database, keys=keys, exercise_id=exercise_id, request_id=upload.request_id
            )
        )
        if stored:
            await _complete(idempotency, upload)  # so it answers after the release, too
            return None
        raise IdempotencyKeyBusy(
            "an upload with this Idempotency-Key is still being handled; retry in a moment"
        )
    return upload


async def _body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives; a client that pauses or dawdles too long is cut off (408).

    uvicorn has no request-body timeout of its own, so without this a client trickling bytes
    would hold its connection and buffers for ever.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + UPLOAD_TOTAL_TIMEOUT_S
    chunks = request.stream().__aiter__()
    while True:
        try:
            # A timer per chunk, not a task per chunk as ``asyncio.wait_for`` would make.
            async with asyncio.timeout_at(min(loop.time() + UPLOAD_IDLE_TIMEOUT_S, deadline)):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except ClientDisconnect:
            raise ClientClosedRequest("the client went away before the upload was sent") from None
        except TimeoutError:
            raise UploadTimeout(
                f"send the upload within {UPLOAD_TOTAL_TIMEOUT_S:.0f} s, pausing at most "
                f"{UPLOAD_IDLE_TIMEOUT_S:.0f} s"
            ) from None
        yield chunk


async def _admit_metadata(raw: bytes, database: Database, policy: Policy) -> ParsedMetadata:
    """Steps 3–4: allowlist the metadata, then check the exercise against the catalog."""
    parsed = parse_clip_metadata(raw)
    if parsed.dropped_fields:
        metrics.METADATA_FIELDS_DROPPED.inc(parsed.dropped_fields)
    exercise_id = parsed.metadata.exercise_id
    cache = eligibility_cache(database)
    min_learners = policy.min_exercise_learners
    eligible = cache.cached(exercise_id, min_learners=min_learners)
    if eligible is None:
        eligible = await run_in_threadpool(
            lambda: cache.is_eligible(exercise_id, min_learners=min_learners)
        )
    if not eligible:
        # A refusal is always read from the catalog itself, never from the copy.
        await run_in_threadpool(
            service.check_exercise, database, policy=policy, exercise_id=exercise_id
        )
        cache.invalidate()  # the catalog admits it now: the copy is out of date
    return parsed


@router.post(
    "/v1/consent/withdrawals",
    response_model=WithdrawalRead,
    summary="Withdraw consent: remove the learner's pending clips",
    dependencies=[Security(CONSENT_TOKEN)],
    responses=problem_responses(Unavailable, DatabaseUnavailable, StorageUnavailable),
)
def withdraw_consent(
    request: Request,
    public_key: ConsentKeyDep,
    policy: PolicyDep,
    database: DatabaseDep,
    store: StoreDep,
    keys: KeyStoreDep,
) -> WithdrawalRead:
    consent = verify_consent(
        bearer_token(request.headers.getlist("authorization")), public_key=public_key, policy=policy
    )
    withdrawn = service.withdraw(database=database, store=store, keys=keys, consent=consent)
    metrics.WITHDRAWN_CLIPS.inc(withdrawn)
    return WithdrawalRead(withdrawn=withdrawn)
