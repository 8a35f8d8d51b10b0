"""docs/consent-token.md says what the service checks: its JSON Schema admits exactly the
claims an upload accepts, and its example verifies."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import jsonschema
import jwt
import pytest

from core.errors import ConsentInvalid, ConsentScopeInvalid, MinorRefused
from ingest.consent import check_age, load_public_key, mint_token, verify_consent
from policies.policy import load_policy
from tests.consent import ConsentKeys

DOC = Path(__file__).resolve().parents[2] / "docs" / "consent-token.md"
POLICY = load_policy("default")


def _schema() -> dict[str, Any]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    schema: dict[str, Any] = json.loads(blocks[0])
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _accepted(token: str, keys: ConsentKeys) -> bool:
    public_key = load_public_key(keys.public_pem)
    assert public_key is not None
    try:
        check_age(verify_consent(token, public_key=public_key, policy=POLICY), policy=POLICY)
    except (ConsentInvalid, ConsentScopeInvalid, MinorRefused):
        return False
    return True


def _valid(claims: dict[str, Any]) -> bool:
    return bool(jsonschema.Draft202012Validator(_schema()).is_valid(claims))


GOOD = {
    "sub": "learner-42",
    "scope": "speech-research",
    "consent_version": "speech-research-v1",
    "age": 30,
    "child": False,
}


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        ({}, True),
        ({"child": None}, True),  # omitted: not a child
        ({"extra": "ignored"}, True),
        ({"sub": ""}, False),
        ({"sub": None}, False),
        ({"scope": "marketing"}, False),
        ({"consent_version": None}, False),
        ({"age": None}, False),
        ({"child": True}, False),
        ({"age": "30"}, False),
    ],
)
def test_schema_and_service_agree(
    consent_keys: ConsentKeys, change: dict[str, Any], accepted: bool
) -> None:
    claims = {**GOOD, **change}
    claims = {name: value for name, value in claims.items() if value is not None}
    now = int(time.time())
    token = jwt.encode(
        {**claims, "iat": now, "exp": now + 3600}, consent_keys.private_key, algorithm="EdDSA"
    )
    decoded = jwt.decode(token, options={"verify_signature": False})
    assert _valid(decoded) is accepted
    assert _accepted(token, consent_keys) is accepted


def test_minted_tokens_match_the_schema_and_the_documented_algorithm(
    consent_keys: ConsentKeys,
) -> None:
    token = mint_token(consent_keys.private_pem, learner_id="L", age=20)
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert _valid(jwt.decode(token, options={"verify_signature": False}))
    assert "**30 seconds**" in DOC.read_text()
