"""The text reproductions that answered 500 on PostgreSQL (a NUL, a lone surrogate) are 422
``unstorable_input`` there and on SQLite, and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chorus.devservers import provision_postgres_database
from core.auth import Role
from tests.consent import ConsentKeys
from tests.hostile.live import LiveApp, hostile_settings, start_live_app

JSON = {"content-type": "application/json"}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def text_app(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    consent_keys: ConsentKeys,
) -> Iterator[LiveApp]:
    folder = tmp_path_factory.mktemp("unstorable")
    if request.param == "sqlite":
        yield from start_live_app(hostile_settings(folder, consent_keys), consent_keys)
        return
    with provision_postgres_database(prefix="chorus_text") as url:
        yield from start_live_app(
            hostile_settings(folder, consent_keys, database_url=url), consent_keys
        )


@pytest.mark.parametrize("bad", ["\\u0000", "\\ud800"])
def test_exercise_usage_language(text_app: LiveApp, bad: str) -> None:
    body = f'[{{"exercise_id": "digit-1", "learners": 500, "language": "e{bad}n"}}]'
    response = text_app.client.put(
        "/v1/exercises/usage", content=body, headers={**JSON, **text_app.headers(Role.ADMIN)}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unstorable_input"
    # The catalog was not replaced: the other exercises are still eligible.
    again = text_app.client.put(
        "/v1/exercises/usage",
        json=[{"exercise_id": f"digit-{d}", "learners": 500} for d in range(10)],
        headers=text_app.headers(Role.ADMIN),
    )
    assert again.json()["exercises"] == 10


@pytest.mark.parametrize("bad", ["\\u0000", "\\udc00"])
def test_report_answer_and_prompt_text(text_app: LiveApp, bad: str) -> None:
    prompts = f'[{{"prompt_id": "p1", "text": "x{bad}y", "accepted": ["a cat"]}}]'
    response = text_app.client.put(
        "/v1/courses/en-fr/prompts",
        content=prompts,
        headers={**JSON, **text_app.headers(Role.ADMIN)},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unstorable_input"
    report = f'{{"course": "en-fr", "prompt_id": "p1", "answer": "a{bad}b", "reporter_id": "r1"}}'
    response = text_app.client.post(
        "/v1/reports", content=report, headers={**JSON, **text_app.headers(Role.APP)}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unstorable_input"
    courses = text_app.client.get("/v1/courses", headers=text_app.headers(Role.CONTRIBUTOR))
    assert courses.json() == []


@pytest.mark.parametrize(
    "url",
    [
        "/v1/reports/queue?course=a%00b",
        "/v1/reports/queue?course=en&cursor=%00",
        "/v1/releases?exercise_id=a%00b",
        "/v1/releases/a%00b",
        "/v1/aggregates/a%00b",
        "/v1/releases/r/clips/%00",
    ],
)
def test_query_and_path_parameters(text_app: LiveApp, url: str) -> None:
    role = Role.CONTRIBUTOR if url.startswith("/v1/reports") else Role.RESEARCHER
    response = text_app.client.get(url, headers=text_app.headers(role))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unstorable_input"
