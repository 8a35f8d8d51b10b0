"""Consent tokens (P1) and the age gate (P2), checked without HTTP and through the routes."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from core.errors import ConfigurationError, ConsentInvalid, ConsentScopeInvalid, MinorRefused
from ingest.consent import check_age, load_public_key, mint_token, verify_consent
from policies.policy import load_policy
from tests.consent import ConsentKeys
from tests.ingest.uploads import NOTHING, Stored, Upload

POLICY = load_policy("demo")


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "learner-1",
        "scope": "speech-research",
        "consent_version": "speech-research-v1",
        "age": 30,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return claims


def _verify(token: str, keys: ConsentKeys) -> Any:
    public_key = load_public_key(keys.public_pem)
    assert public_key is not None
    return verify_consent(token, public_key=public_key, policy=POLICY)


def _hand_signed(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A JWT signed by hand, since PyJWT itself refuses to HMAC with a PEM key."""

    def part(value: dict[str, Any]) -> str:
        return jwt.utils.base64url_encode(json.dumps(value).encode()).decode()

    signing_input = f"{part(header)}.{part(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{jwt.utils.base64url_encode(signature).decode()}"


def _forged_tokens(keys: ConsentKeys) -> dict[str, str]:
    other = Ed25519PrivateKey.generate()
    valid = mint_token(keys.private_key, learner_id="learner-1")
    header, payload, _signature = valid.split(".")
    tampered_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b"learner-1", b"learner-2")
    ).decode()
    unsigned = jwt.encode(_claims(), key="", algorithm="none")  # "" is no key to PyJWT
    # HS256 keyed with the public key text: the classic algorithm-confusion forgery.
    hs256 = _hand_signed({"alg": "HS256", "typ": "JWT"}, _claims(), keys.public_pem.encode())
    return {
        "other key": mint_token(other, learner_id="learner-1"),
        "tampered payload": f"{header}.{tampered_payload}.{_signature}",
        "alg none": unsigned,
        "hs256 with public key": hs256,
        "expired": mint_token(keys.private_key, learner_id="learner-1", ttl_s=-120),
        "no expiry": jwt.encode(
            {k: v for k, v in _claims().items() if k != "exp"}, keys.private_key, algorithm="EdDSA"
        ),
        "not a jwt": "hello",
    }


def test_valid_token_yields_the_learner(consent_keys: ConsentKeys) -> None:
    consent = _verify(mint_token(consent_keys.private_key, learner_id="abc", age=17), consent_keys)
    assert (consent.learner_id, consent.age, consent.child) == ("abc", 17, False)
    assert "abc" not in repr(consent)


@pytest.mark.parametrize(
    "name",
    [
        "other key",
        "tampered payload",
        "alg none",
        "hs256 with public key",
        "expired",
        "no expiry",
        "not a jwt",
    ],
)
def test_forged_or_expired_tokens_are_invalid(name: str, consent_keys: ConsentKeys) -> None:
    with pytest.raises(ConsentInvalid):
        _verify(_forged_tokens(consent_keys)[name], consent_keys)


@pytest.mark.parametrize(
    "claims",
    [{"scope": "speech"}, {"scope": None}, {"consent_version": "v9"}, {"consent_version": None}],
)
def test_wrong_scope_or_version_is_forbidden(
    claims: dict[str, Any], consent_keys: ConsentKeys
) -> None:
    token = jwt.encode(_claims(**claims), consent_keys.private_key, algorithm="EdDSA")
    with pytest.raises(ConsentScopeInvalid):
        _verify(token, consent_keys)


@pytest.mark.parametrize(
    "claims",
    [
        {"child": True},
        {"child": "no"},
        {"age": None},
        {"age": 15},
        {"age": "30"},
        {"age": True},
        {"age": 15.9},
        {"age": -30},
        {"age": 200},
        {"age": 1e30},
    ],
)
def test_age_gate_fails_closed(claims: dict[str, Any], consent_keys: ConsentKeys) -> None:
    token = jwt.encode(_claims(**claims), consent_keys.private_key, algorithm="EdDSA")
    consent = _verify(token, consent_keys)
    with pytest.raises(MinorRefused) as raised:
        check_age(consent, policy=POLICY)
    assert "learner-1" not in str(raised.value.detail)


def test_age_gate_admits_adults(consent_keys: ConsentKeys) -> None:
    token = jwt.encode(_claims(age=16, child=False), consent_keys.private_key, algorithm="EdDSA")
    check_age(_verify(token, consent_keys), policy=POLICY)


def _now() -> int:
    return int(time.time())


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "9999999999"},  # a string of digits, which PyJWT reads as a time
        {"exp": 10**30},
        {"exp": float("inf")},  # written as Infinity, which Python's JSON reader accepts
        {"exp": True},
        {"exp": None},
        {"iat": str(_now())},
        {"iat": 0},
        {"iat": _now() + 3600},  # issued in the future
        {"iat": _now() + 600, "exp": _now() + 300},  # expires before it was issued
        {"exp": _now() + 10 * 366 * 86400},  # valid for ten years
    ],
)
def test_times_must_be_json_numbers_in_sane_bounds(
    claims: dict[str, Any], consent_keys: ConsentKeys
) -> None:
    token = jwt.encode(_claims(**claims), consent_keys.private_key, algorithm="EdDSA")
    with pytest.raises(ConsentInvalid):
        _verify(token, consent_keys)


def test_plausible_numbers_are_accepted(consent_keys: ConsentKeys) -> None:
    now = time.time()
    token = jwt.encode(
        _claims(iat=now - 0.5, exp=now + 365 * 86400.5, age=30.5),
        consent_keys.private_key,
        algorithm="EdDSA",
    )
    consent = _verify(token, consent_keys)
    assert consent.age == 30
    assert consent.expires_at >= now + 365 * 86400
    check_age(consent, policy=POLICY)


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize("path", ["/v1/clips", "/v1/consent/withdrawals"])
def test_a_second_authorization_header_is_400_and_stores_nothing(
    path: str,
    consent_keys: ConsentKeys,
    client: TestClient,
    wav_bytes: bytes,
    stored: Callable[[], Stored],
) -> None:
    adult = mint_token(consent_keys.private_key, learner_id="learner-1")
    other = mint_token(consent_keys.private_key, learner_id="learner-2")
    response = client.post(
        path,
        files=[("metadata", (None, b'{"exercise_id":"digit-7"}')), ("audio", ("a", wav_bytes))],
        headers=[("Authorization", f"Bearer {adult}"), ("Authorization", f"Bearer {other}")],
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "duplicate_header"
    assert stored() == NOTHING


@pytest.mark.parametrize(
    "name", ["other key", "tampered payload", "alg none", "hs256 with public key", "expired"]
)
def test_forged_tokens_are_401_over_http_and_store_nothing(
    name: str,
    consent_keys: ConsentKeys,
    wav_bytes: bytes,
    upload: Upload,
    stored: Callable[[], Stored],
    catalog: list[str],
) -> None:
    response = upload(_forged_tokens(consent_keys)[name], wav_bytes)
    assert response.status_code == 401
    assert response.json()["code"] == "consent_invalid"
    assert stored() == NOTHING


def test_public_key_loading(tmp_path: Any, consent_keys: ConsentKeys) -> None:
    path = tmp_path / "public.pem"
    path.write_text(consent_keys.public_pem)
    assert load_public_key(str(path)) is not None
    assert load_public_key(None) is None
    assert load_public_key("  ") is None
    for bad in ["-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----", str(tmp_path / "x")]:
        with pytest.raises(ConfigurationError):
            load_public_key(bad)


def test_malformed_public_key_refuses_to_start(make_settings: Callable[..., Any]) -> None:
    from chorus.app import create_app

    with pytest.raises(ConfigurationError, match="CHORUS_CONSENT_PUBLIC_KEY"):
        create_app(make_settings(consent_public_key="-----BEGIN PUBLIC KEY-----\nx\n"))


def test_rsa_public_key_is_refused(make_settings: Callable[..., Any]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from chorus.app import create_app

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ConfigurationError, match="Ed25519"):
        create_app(make_settings(consent_public_key=pem))


def test_without_a_public_key_uploads_answer_503(
    make_settings: Callable[..., Any], consent_keys: ConsentKeys, wav_bytes: bytes
) -> None:
    from fastapi.testclient import TestClient

    from chorus.app import create_app

    app = create_app(make_settings(consent_public_key=None))
    token = mint_token(consent_keys.private_key, learner_id="learner-1")
    with TestClient(app) as client:
        response = client.post(
            "/v1/clips",
            files=[("metadata", (None, b'{"exercise_id":"digit-7"}')), ("audio", ("a", wav_bytes))],
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 503
        assert client.get("/healthz").status_code == 200
        assert list(app.state.store.list("pending/")) == []
