"""The exercise catalog carries text, language (BCP 47), course and skill; PATCH upserts;
``chorus exercises import`` reads the same columns."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from chorus.cli import app as chorus
from core.auth import Role
from core.db import Database
from core.settings import Settings, reset_settings_cache
from exercises.models import bcp47
from exercises.tables import ExerciseUsage

runner = CliRunner()
Auth = Callable[[Role], dict[str, str]]


def _catalog(database: Database) -> dict[str, dict[str, object]]:
    with database.session() as session:
        rows = session.execute(sa.select(ExerciseUsage)).scalars().all()
        return {
            row.exercise_id: {
                "learners": row.learners,
                "language": row.language,
                "text": row.text,
                "course": row.course,
                "skill": row.skill,
            }
            for row in rows
        }


@pytest.mark.parametrize(
    "tag",
    [
        "en",
        "en-US",
        "pt-BR",
        "zh-Hant-TW",
        "es-419",
        "sr-Latn-RS",
        "de-CH-1996",
        "x-klingon",
        "en-x-chorus",
        "yue",
    ],
)
def test_well_formed_language_tags_pass(tag: str) -> None:
    assert bcp47(tag) == tag


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "english",
        "en_US",
        "e",
        "en-",
        "-en",
        "en--US",
        "en-US-",
        "12",
        "en US",
        "en-Latn-Latn-US-",
        "x",
    ],
)
def test_malformed_language_tags_fail(tag: str) -> None:
    with pytest.raises(ValueError, match="BCP 47"):
        bcp47(tag)


def test_put_stores_text_language_course_and_skill(
    client: TestClient, app: FastAPI, auth: Auth
) -> None:
    body = [
        {
            "exercise_id": "greet-1",
            "learners": 2000,
            "text": "Hello, how are you?",
            "language": "en-GB",
            "course": "en-basics",
            "skill": "greetings",
        },
        {"exercise_id": "greet-2", "learners": 10},
    ]
    response = client.put("/v1/exercises/usage", json=body, headers=auth(Role.ADMIN))
    assert response.status_code == 200, response.text
    assert response.json() == {"exercises": 2, "eligible": 1}
    assert _catalog(app.state.database) == {
        "greet-1": {
            "learners": 2000,
            "language": "en-GB",
            "text": "Hello, how are you?",
            "course": "en-basics",
            "skill": "greetings",
        },
        "greet-2": {"learners": 10, "language": None, "text": None, "course": None, "skill": None},
    }


@pytest.mark.parametrize(
    "entry",
    [
        {"exercise_id": "a", "learners": 1, "language": "english"},
        {"exercise_id": "a", "learners": 1, "text": ""},
        {"exercise_id": "a", "learners": 1, "text": "x" * 2001},
        {"exercise_id": "a", "learners": 1, "course": "c" * 201},
        {"exercise_id": "a", "learners": 1, "learner_id": "someone"},
    ],
)
def test_bad_entries_are_refused_and_nothing_changes(
    client: TestClient, app: FastAPI, auth: Auth, entry: dict[str, object]
) -> None:
    client.put(
        "/v1/exercises/usage",
        json=[{"exercise_id": "kept", "learners": 5}],
        headers=auth(Role.ADMIN),
    )
    for method in ("PUT", "PATCH"):
        response = client.request(
            method, "/v1/exercises/usage", json=[entry], headers=auth(Role.ADMIN)
        )
        assert response.status_code == 422, (method, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert list(_catalog(app.state.database)) == ["kept"]


def test_patch_adds_and_changes_entries_and_keeps_the_others(
    client: TestClient, app: FastAPI, auth: Auth
) -> None:
    admin = auth(Role.ADMIN)
    client.put(
        "/v1/exercises/usage",
        json=[
            {"exercise_id": "one", "learners": 500, "language": "fr", "text": "Bonjour"},
            {"exercise_id": "two", "learners": 3000, "course": "c1"},
        ],
        headers=admin,
    )
    response = client.patch(
        "/v1/exercises/usage",
        json=[
            {"exercise_id": "one", "learners": 1500, "skill": "listening"},
            {"exercise_id": "two", "course": None},
            {"exercise_id": "three", "learners": 7, "text": "Ciao", "language": "it"},
        ],
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"added": 1, "changed": 2, "exercises": 3, "eligible": 2}
    assert _catalog(app.state.database) == {
        "one": {
            "learners": 1500,
            "language": "fr",
            "text": "Bonjour",
            "course": None,
            "skill": "listening",
        },
        "two": {"learners": 3000, "language": None, "text": None, "course": None, "skill": None},
        "three": {"learners": 7, "language": "it", "text": "Ciao", "course": None, "skill": None},
    }


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ([{"exercise_id": "new", "text": "no learners"}], "give its learners"),
        ([{"exercise_id": "one", "learners": None}], "cannot be cleared"),
        (
            [{"exercise_id": "one", "learners": 1}, {"exercise_id": "one", "learners": 2}],
            "listed twice",
        ),
    ],
)
def test_patch_refuses_incomplete_entries_whole(
    client: TestClient, app: FastAPI, auth: Auth, body: list[dict[str, object]], detail: str
) -> None:
    admin = auth(Role.ADMIN)
    client.put("/v1/exercises/usage", json=[{"exercise_id": "one", "learners": 5}], headers=admin)
    response = client.patch(
        "/v1/exercises/usage",
        json=[{"exercise_id": "two", "learners": 9}, *body],
        headers=admin,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert detail in response.json()["detail"]
    assert _catalog(app.state.database) == {
        "one": {"learners": 5, "language": None, "text": None, "course": None, "skill": None}
    }


def test_patch_needs_admin(client: TestClient, auth: Auth) -> None:
    body = [{"exercise_id": "one", "learners": 5}]
    assert client.patch("/v1/exercises/usage", json=body).status_code == 401
    assert (
        client.patch("/v1/exercises/usage", json=body, headers=auth(Role.RESEARCHER)).status_code
        == 403
    )


@pytest.fixture
def cli_env(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    settings = make_settings()
    monkeypatch.setenv("CHORUS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHORUS_POLICY", "demo")
    reset_settings_cache()
    yield settings
    reset_settings_cache()


def test_import_reads_the_catalog_columns_and_update_upserts(
    cli_env: Settings, tmp_path: Path
) -> None:
    full = tmp_path / "catalog.csv"
    full.write_text(
        "exercise_id,learners,language,text,course,skill\n"
        'one,500,pt-BR,"Olá, tudo bem?",pt-basics,greetings\n'
        "two,20,,,,\n",
        encoding="utf-8",
    )
    result = runner.invoke(chorus, ["exercises", "import", str(full)])
    assert result.exit_code == 0, result.output
    assert "replaced: 2 exercises, 1 with at least 100 learners" in result.output

    update = tmp_path / "update.csv"
    update.write_text("exercise_id,learners,text\none,,Oi!\nthree,300,Hola\n", encoding="utf-8")
    result = runner.invoke(chorus, ["exercises", "import", "--update", str(update)])
    assert result.exit_code == 0, result.output
    assert "updated (1 added, 1 changed): 3 exercises, 2 with" in result.output

    database = Database(cli_env.database_url)
    try:
        assert _catalog(database) == {
            "one": {
                "learners": 500,
                "language": "pt-BR",
                "text": "Oi!",
                "course": "pt-basics",
                "skill": "greetings",
            },
            "two": {"learners": 20, "language": None, "text": None, "course": None, "skill": None},
            "three": {
                "learners": 300,
                "language": None,
                "text": "Hola",
                "course": None,
                "skill": None,
            },
        }
    finally:
        database.dispose()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("exercise_id,learners,language\none,5,not a tag\n", "line 2"),
        ("exercise_id,learners,voice\none,5,x\n", "unknown column(s) voice"),
        ("exercise_id,language\none,en\n", "missing column(s) learners"),
    ],
)
def test_import_refuses_bad_rows(
    cli_env: Settings, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(chorus, ["exercises", "import", str(path)])
    assert result.exit_code == 2
    assert message in result.output
