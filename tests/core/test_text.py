"""Text no supported database can store is refused at the model layer with 422
``unstorable_input``, on every text field and parameter of every route; a database
``DataError`` that still slips through is a 422 too, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError

from chorus.app import create_app
from core.handlers import install_error_handlers
from core.settings import Settings
from core.text import SCHEMA_MARK, StorableText, find_unstorable

# The upload's metadata part is JSON text, parsed by ingest.models.parse_clip_metadata into a
# model whose fields are StorableText; it is never stored as it is.
NOT_STORED = {("/v1/clips", "metadata")}


class _Note(BaseModel):
    text: StorableText
    tags: list[StorableText] = []


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("plain", None),
        ("", None),
        ("e\x00n", 1),
        ("a\ud800", 1),
        ("\udfff", 0),
        ("emoji \U0001f600 ok", None),
        ("\ufffe\uffff", None),
    ],
)
def test_find_unstorable(text: str, position: int | None) -> None:
    assert find_unstorable(text) == position


def test_model_refuses_nul_and_lone_surrogates_without_echoing_them() -> None:
    with pytest.raises(ValidationError) as refused:
        _Note.model_validate({"text": "ok", "tags": ["fine", "bad\x00secret"]})
    (error,) = refused.value.errors()
    assert error["type"] == "unstorable_input"
    assert error["loc"] == ("tags", 1)
    assert "secret" not in error["msg"]
    assert _Note.model_validate({"text": "ü \U0001f600"}).text == "ü \U0001f600"


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/notes")
    def notes(note: _Note, q: Annotated[StorableText | None, Query()] = None) -> dict[str, str]:
        return {"text": note.text}

    @app.get("/data-error")
    def data_error() -> None:
        raise DataError("INSERT …", {"v": "secret\x00value"}, Exception("NUL in secret\x00value"))

    return app


def test_request_with_nul_or_surrogate_is_422_unstorable_input() -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    raw = b'{"text": "a\\u0000b", "tags": ["\\ud83d"]}'
    response = client.post("/notes", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "unstorable_input"
    assert [e["loc"] for e in body["errors"]] == [["body", "text"], ["body", "tags", "0"]]
    query = client.post("/notes?q=a%00b", json={"text": "fine"})
    assert query.status_code == 422
    assert query.json()["code"] == "unstorable_input"
    # Other faults keep their own code.
    assert client.post("/notes", json={"text": 3}).json()["code"] == "invalid_input"


def test_database_data_error_is_422_without_the_value() -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    response = client.get("/data-error")
    assert response.status_code == 422
    assert response.json()["code"] == "unstorable_input"
    assert "secret" not in response.text


def _string_schemas(
    schema: Any, components: dict[str, Any], where: str, seen: frozenset[str] = frozenset()
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every string schema reachable from ``schema``, with a path naming where it is."""
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from _string_schemas(item, components, f"{where}[{index}]", seen)
        return
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in seen:
            yield from _string_schemas(components[name], components, name, seen | {name})
        return
    if schema.get("type") == "string" and "format" not in schema and "enum" not in schema:
        yield where, schema
    for key in ("properties",):
        for name, sub in schema.get(key, {}).items():
            yield from _string_schemas(sub, components, f"{where}.{name}", seen)
    for key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
        if key in schema:
            yield from _string_schemas(schema[key], components, where, seen)


def test_every_text_field_and_parameter_of_every_route_is_storable_text(tmp_path: Path) -> None:
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'chorus.db'}",
            storage_url=f"file://{tmp_path / 'blobs'}",
            policy="demo",
            model_dir=tmp_path / "models",
        )
    )
    document = app.openapi()
    components = document.get("components", {}).get("schemas", {})
    checked: list[str] = []
    unchecked: list[str] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            sources: list[tuple[str, Any]] = [
                (f"{method} {path} {p['in']} {p['name']}", p["schema"])
                for p in operation.get("parameters", ())
            ]
            for content in operation.get("requestBody", {}).get("content", {}).values():
                sources.append((f"{method} {path} body", content["schema"]))
            for where, schema in sources:
                for found, string in _string_schemas(schema, components, where):
                    if (path, found.rsplit(".", 1)[-1]) in NOT_STORED:
                        continue
                    (checked if string.get(SCHEMA_MARK) else unchecked).append(found)
    assert unchecked == [], json.dumps(unchecked, indent=1)
    # The walk reached the fields the issue names, so it is not vacuous.
    joined = "\n".join(checked)
    for expected in (
        "ExerciseUsageCreate.language",
        "ReportCreate.answer",
        "PromptCreate.text",
        "get /v1/reports/queue query course",
        "release_id",
    ):
        assert expected in joined
