"""Dependencies of the ingest routes, as ``Annotated`` aliases.

They only read ``app.state``, so they are ``async``: FastAPI runs a plain ``def`` dependency in
the thread pool, a hop per dependency per upload that costs more than the lookup itself.
"""

from __future__ import annotations

from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from core.db import Database
from core.errors import Unavailable
from core.idempotency import IdempotencyStore
from ingest.decoder import DecoderPool
from policies.deps import PolicyDep

__all__ = [
    "CONSENT_TOKEN",
    "ConsentKeyDep",
    "DecoderDep",
    "IdempotencyDep",
    "PolicyDep",
    "StorageUrlDep",
    "UploadDatabaseDep",
]

# Declares the bearer token in OpenAPI (``securitySchemes.ConsentToken``); the routes check the
# header themselves (``ingest.consent``), so the answers stay our own problem documents.
CONSENT_TOKEN = HTTPBearer(
    scheme_name="ConsentToken",
    bearerFormat="JWT",
    description="The learner's consent token: an EdDSA-signed JWT from the app's account "
    "service (claims: docs/consent-token.md).",
    auto_error=False,
)


async def get_consent_key(request: Request) -> Ed25519PublicKey:
    """The consent public key; without one the consent routes answer 503 and store nothing."""
    key: Ed25519PublicKey | None = getattr(request.app.state, "consent_public_key", None)
    if key is None:
        raise Unavailable("no consent public key is configured (CHORUS_CONSENT_PUBLIC_KEY)")
    return key


async def get_decoder(request: Request) -> DecoderPool:
    decoder: DecoderPool | None = getattr(request.app.state, "decoder", None)
    if decoder is None:
        raise Unavailable("the audio decoder is not running")
    return decoder


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_storage_url(request: Request) -> str:
    """Where upload workers open the store (the API process's own ``CHORUS_STORAGE_URL``)."""
    url: str = request.app.state.settings.storage_url
    return url


async def get_idempotency(request: Request) -> IdempotencyStore:
    store: IdempotencyStore = request.app.state.idempotency
    return store


IdempotencyDep = Annotated[IdempotencyStore, Depends(get_idempotency)]
ConsentKeyDep = Annotated[Ed25519PublicKey, Depends(get_consent_key)]
DecoderDep = Annotated[DecoderPool, Depends(get_decoder)]
UploadDatabaseDep = Annotated[Database, Depends(get_database)]
StorageUrlDep = Annotated[str, Depends(get_storage_url)]
