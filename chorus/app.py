"""The application factory: wires settings, database, storage, policy and every domain."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from aggregate.jobs import schedule_release_job
from aggregate.routes import audit_router as aggregate_audit_router
from aggregate.routes import router as aggregate_router
from chorus.docs import add_offline_docs
from chorus.routes import home_router
from chorus.routes import router as verify_router
from core.db import Database
from core.deps import OperatorOrAuditorRole
from core.errors import ChorusError, ConfigurationError
from core.handlers import (
    PROBLEM_RESPONSES,
    document_problems,
    install_error_handlers,
    problem_response,
)
from core.idempotency import open_idempotency_store
from core.keystore import KeyStore, namespace_for, open_key_store
from core.limits import BodyLimitMiddleware
from core.logs import AccessLogMiddleware
from core.metrics import render_metrics
from core.scheduler import build_scheduler, interval_trigger
from core.settings import Settings, get_settings
from core.storage import BlobStore, open_store
from exercises.routes import router as exercises_router
from ingest.consent import load_public_key
from ingest.decoder import DecoderPool, WarmUp
from ingest.jobs import OrphanSweeper
from ingest.requirements import document_upload_contract
from ingest.routes import router as ingest_router
from policies.policy import Policy, load_policy
from policies.routes import router as policies_router
from policies.service import record_policy_load
from reports_ml.jobs import schedule_retraining
from reports_ml.registry import ModelRegistry, ServingModel
from reports_ml.routes import router as reports_router

_logger = logging.getLogger("chorus.app")
# Upload and withdrawal requests leave no access-log line: one would say when a clip arrived (P4).
QUIET_PATHS = ("/v1/clips", "/v1/consent")


def prepare(settings: Settings) -> tuple[Database, BlobStore, Policy, KeyStore]:
    """Open and check everything the service needs; raises ConfigurationError and friends."""
    policy = load_policy(settings.policy)
    # A malformed consent key refuses to start; a missing one leaves the consent routes at 503.
    load_public_key(settings.consent_public_key)
    store = open_store(settings.storage_url)
    if settings.key_store_url.startswith("memory:"):
        raise ConfigurationError(
            "CHORUS_KEY_STORE_URL: memory:// keys cannot be shared with the upload workers and "
            "the release job; use tmpfs:///dev/shm or redis://"
        )
    keys = open_key_store(settings.key_store_url, database_url=settings.database_url)
    database = Database(settings.database_url)
    if not database.is_shared_file:
        database.dispose()
        raise ConfigurationError(
            "CHORUS_DATABASE_URL: an in-memory SQLite database cannot be shared with the upload "
            "workers; use a file (sqlite:///PATH) or PostgreSQL"
        )
    return database, store, policy, keys


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    database, store, policy, keys = prepare(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database.upgrade()
        record_policy_load(database, policy)
        decoder = DecoderPool(
            workers=settings.decoder_workers,
            warm_up=WarmUp(database.url, settings.storage_url, settings.key_store_url),
        )
        decoder.start()
        app.state.decoder = decoder
        # Built only when it runs: its job-process executor makes interprocess queues at once,
        # which a scheduler that never starts would never close.
        scheduler = _start_scheduler(settings, database, store, policy)
        # What the process holds once it is up (modules, routes, the OpenAPI schema: a few
        # hundred thousand objects) lives as long as it does: out of the collector's sight, a
        # full collection does not walk it, and does not stop the event loop for a quarter of
        # a second every time the young generations overflow.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # what was held may go now (an app of a test run, say)
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            decoder.shutdown()
            database.dispose()

    app = FastAPI(
        title="Chorus",
        version="0.1.0",
        summary="Consent-gated speech collection released only in k-anonymous batches",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.store = store
    app.state.keys = keys
    app.state.idempotency = open_idempotency_store(
        settings.key_store_url,
        namespace=namespace_for(settings.database_url),
        ttl_s=settings.idempotency_ttl_s,
    )
    app.state.policy = policy
    app.state.serving_model = ServingModel(
        ModelRegistry(database, store), poll_s=settings.model_poll_s
    )
    app.state.consent_public_key = load_public_key(settings.consent_public_key)
    install_error_handlers(app)
    # Uploads stream against the policy's own cap; every other body is JSON of bounded size.
    app.add_middleware(BodyLimitMiddleware, exempt_paths=("/v1/clips",))
    app.add_middleware(AccessLogMiddleware, quiet_paths=QUIET_PATHS)

    app.include_router(ingest_router)
    app.include_router(exercises_router)
    app.include_router(aggregate_router)
    app.include_router(policies_router)
    app.include_router(aggregate_audit_router)
    app.include_router(verify_router)
    app.include_router(reports_router)
    app.include_router(home_router)
    _add_operational_routes(app)
    add_offline_docs(app)
    document_problems(app)
    document_upload_contract(app)
    return app


def _start_scheduler(
    settings: Settings, database: Database, store: BlobStore, policy: Policy
) -> BackgroundScheduler | None:
    """The periodic jobs (orphan sweep, release cycle, retraining), started; ``None`` when the
    settings turn the scheduler off."""
    if not settings.scheduler_enabled:
        return None
    scheduler = build_scheduler()
    scheduler.add_job(
        OrphanSweeper(database=database, store=store).run,
        interval_trigger(str(settings.sweep_interval_s)),
        id="ingest-orphan-sweep",
    )
    schedule_release_job(
        scheduler,
        database_url=database.url,
        storage_url=settings.storage_url,
        key_store_url=settings.key_store_url,
        policy=policy,
        interval=settings.release_interval or policy.release_interval,
        log_level=settings.log_level,
    )
    schedule_retraining(
        scheduler,
        database_url=database.url,
        storage_url=settings.storage_url,
        interval=settings.retrain_interval,
        log_level=settings.log_level,
    )
    scheduler.start()
    return scheduler


def _add_operational_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], response_model=None)
    def readyz(request: Request) -> JSONResponse | dict[str, Any]:
        checks: dict[str, str] = {}
        failed: ChorusError | None = None
        min_free_bytes = request.app.state.settings.storage_min_free_mb * 2**20
        state = request.app.state
        for name, probe in (
            ("database", state.database.check),
            ("storage", lambda: state.store.check(min_free_bytes=min_free_bytes)),
            # Uploads need both: a bucket key to tag the clip, the idempotency store to claim.
            # A key store that started to persist is not ready: keys must never reach a disk.
            ("key_store", lambda: _probe_key_store(state.keys)),
            ("idempotency_store", state.idempotency.check),
        ):
            try:
                probe()
                checks[name] = "ok"
            except ChorusError as exc:
                checks[name] = exc.code
                failed = failed or exc
        if failed is not None:
            return problem_response(
                status=503,
                code=failed.code,
                title="Not ready",
                detail=", ".join(f"{k}: {v}" for k, v in checks.items()),
                checks=checks,
            )
        return {"status": "ready", "checks": checks}

    # Counter steps between scrapes still say roughly when uploads arrived (P4): operators and
    # auditors only (P11).
    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics(_role: OperatorOrAuditorRole) -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` with several workers."""
    import multiprocessing
    import os

    from core.lifeline import exit_when_gone
    from core.logs import configure_logging

    if multiprocessing.parent_process() is not None:
        # A worker of ``chorus serve --workers N``: it ends with the supervisor, even a
        # SIGKILLed one, and its own children with it.
        exit_when_gone(os.getppid())
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def _probe_key_store(keys: KeyStore) -> None:
    """The key store answers, and keeps nothing on disk right now (a Redis told to persist at
    run time is not ready: no bucket key may be written into its dump)."""
    keys.get("readiness-probe")
    keys.ensure_memory_only()
