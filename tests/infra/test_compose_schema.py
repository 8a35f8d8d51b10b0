"""``infra/compose.yaml`` against the Compose specification's JSON schema, as vendored (with its
Apache-2.0 licence) by the ``check-jsonschema`` package; the Kubernetes manifests are checked
with kubernetes-validate in ``test_manifests.py``."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "infra" / "compose.yaml"
_VENDOR = "check_jsonschema.builtin_schemas.vendor"


def _compose_schema() -> dict[str, Any]:
    text = resources.files(_VENDOR).joinpath("compose-spec.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _errors(document: dict[str, Any]) -> list[str]:
    schema = _compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


def test_the_vendored_schema_is_the_compose_specifications_with_its_licence() -> None:
    schema = _compose_schema()
    assert "compose" in str(schema.get("$id", "")) + str(schema.get("title", "")).lower()
    licence = resources.files(_VENDOR).joinpath("licenses", "LICENSE.compose-spec")
    assert "Apache License" in licence.read_text(encoding="utf-8")


def test_compose_file_matches_the_compose_specification() -> None:
    assert _errors(_compose()) == []


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("a misspelt service key", lambda d: d["services"]["redis"].update(healtcheck={})),
        ("depends_on that is a number", lambda d: d["services"]["api"].update(depends_on=5)),
        ("an unknown top-level key", lambda d: d.update(service={})),
    ],
)
def test_the_schema_check_rejects_a_broken_compose_file(where: str, change: Any) -> None:
    broken = copy.deepcopy(_compose())
    change(broken)
    assert _errors(broken), where
