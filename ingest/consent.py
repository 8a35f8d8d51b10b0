"""Consent tokens and the age gate.

Upholds P1: nothing is stored without an EdDSA (Ed25519) JWT, verified against the configured
public key, that is unexpired, has scope ``speech-research`` and a consent version the policy
accepts. Only EdDSA is admitted, so ``alg: none`` and HS256 signed with the public key fail.
Upholds P2: ``check_age`` refuses a child flag, a missing age or an age below the policy's
minimum; its error carries no claim values, and nothing here logs.

``mint_token`` and ``generate_keypair`` serve development, tests and the demo; production holds
only the public key.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.errors import (
    ConfigurationError,
    ConsentInvalid,
    ConsentScopeInvalid,
    DuplicateHeader,
    MinorRefused,
)
from policies.policy import Policy

CONSENT_SCOPE = "speech-research"
ALGORITHM = "EdDSA"
DEFAULT_VERSION = "speech-research-v1"
_LEEWAY_S = 30
# Sane bounds of the numeric claims: issued after 2020 and not in the future, valid for at most
# two years from now, an age a person can have. Anything else is refused, not clamped.
_EARLIEST_IAT = 1_577_836_800
_MAX_LIFETIME_S = 2 * 366 * 86400
_MAX_AGE = 150


@dataclass(frozen=True)
class Consent:
    """The verified claims the pipeline uses; the learner id stays in memory only (P3)."""

    learner_id: str
    consent_version: str
    age: int | None
    child: bool
    # SHA-256 of the token itself and its expiry: what a withdrawal keeps to refuse the token
    # until then (P9), never the learner id.
    token_hash: str = ""
    expires_at: int = 0

    def __repr__(self) -> str:  # never print the learner id by accident
        return f"Consent(version={self.consent_version!r})"


def load_public_key(value: str | None) -> Ed25519PublicKey | None:
    """The Ed25519 public key from PEM text or a PEM file path; None when not configured."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if "-----BEGIN" not in text:
        path = Path(text)
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"CHORUS_CONSENT_PUBLIC_KEY is neither PEM text nor a readable PEM file: "
                f"{type(exc).__name__}"
            ) from None
    try:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ConfigurationError(
            "CHORUS_CONSENT_PUBLIC_KEY is not a valid PEM public key"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError("CHORUS_CONSENT_PUBLIC_KEY must be an Ed25519 public key")
    return key


def bearer_token(authorization: Sequence[str]) -> str:
    """The token of the request's ``Authorization`` values (all of them: a second one is
    refused, since which one would count is a guess)."""
    if len(authorization) > 1:
        raise DuplicateHeader("send one Authorization header")
    scheme, _, token = (authorization[0] if authorization else "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ConsentInvalid("send the consent token as 'Authorization: Bearer <token>'")
    return token.strip()


def verify_consent(token: str, *, public_key: Ed25519PublicKey, policy: Policy) -> Consent:
    """Verify signature, expiry, scope and version (P1); raises ConsentInvalid/ScopeInvalid."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=public_key,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
            leeway=_LEEWAY_S,
        )
    except jwt.ExpiredSignatureError:
        raise ConsentInvalid("the consent token has expired") from None
    except jwt.PyJWTError:
        raise ConsentInvalid("the consent token is not valid") from None
    _check_numeric_claims(claims, now=time.time())
    learner_id = claims.get("sub")
    if not isinstance(learner_id, str) or not learner_id:
        raise ConsentInvalid("the consent token names no learner")
    if claims.get("scope") != CONSENT_SCOPE:
        raise ConsentScopeInvalid(f"the consent token's scope is not {CONSENT_SCOPE!r}")
    version = claims.get("consent_version")
    if not isinstance(version, str) or version not in policy.accepted_consent_versions:
        raise ConsentScopeInvalid("the consent version is not accepted by the policy")
    age = _number(claims.get("age"))
    child = claims.get("child", False)
    return Consent(
        token_hash=hashlib.sha256(token.encode("utf-8")).hexdigest(),
        expires_at=math.ceil(claims["exp"]),
        learner_id=learner_id,
        consent_version=version,
        # Anything but a number from 0 to _MAX_AGE is no age, which the age gate refuses (P2:
        # fails closed, and uncounted); a fractional age is rounded down.
        age=math.floor(age) if age is not None and 0 <= age <= _MAX_AGE else None,
        # Anything but an explicit false counts as a child flag: the gate fails closed.
        child=child is not False,
    )


def _number(value: object) -> float | None:
    """A JSON number: an int or a finite float (a bool, a string of digits or NaN is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _check_numeric_claims(claims: dict[str, Any], *, now: float) -> None:
    """``iat`` and ``exp`` are JSON numbers within sane bounds (PyJWT accepts a string of
    digits, or 10**30, as a time)."""
    issued, expires = _number(claims.get("iat")), _number(claims.get("exp"))
    if issued is None or not _EARLIEST_IAT <= issued <= now + _LEEWAY_S:
        raise ConsentInvalid("the consent token's iat is not a plausible time (a number)")
    if expires is None or not issued < expires <= now + _MAX_LIFETIME_S:
        raise ConsentInvalid(
            "the consent token's exp is not a time after iat and within two years (a number)"
        )


def check_age(consent: Consent, *, policy: Policy) -> None:
    """The age gate (P2): child flag, unknown age or age below the minimum → MinorRefused."""
    if consent.child or consent.age is None or consent.age < policy.min_contributor_age:
        raise MinorRefused(
            f"contributors must be at least {policy.min_contributor_age} "
            "and not flagged as children"
        )


# --- development tooling -----------------------------------------------------------------


def generate_keypair() -> tuple[str, str]:
    """A new Ed25519 pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def load_private_key(pem: str | bytes) -> Ed25519PrivateKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError("the consent private key is not a valid PEM key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError("the consent private key must be an Ed25519 key")
    return key


def mint_token(
    private_key: Ed25519PrivateKey | str | bytes,
    *,
    learner_id: str,
    age: int | None = 30,
    child: bool = False,
    consent_version: str = DEFAULT_VERSION,
    scope: str = CONSENT_SCOPE,
    ttl_s: int = 3600,
    now: float | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """A signed consent token as the app's account service would issue it."""
    key = (
        private_key if isinstance(private_key, Ed25519PrivateKey) else load_private_key(private_key)
    )
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": learner_id,
        "scope": scope,
        "consent_version": consent_version,
        "child": child,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    if age is not None:
        claims["age"] = age
    claims.update(extra_claims or {})
    return jwt.encode(claims, key, algorithm=ALGORITHM)
