"""The review API: prompts, intake, queue, decisions, outbox — every answer a caller can get."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.auth import Role

Auth = Callable[[Role], dict[str, str]]

PROMPTS: list[dict[str, Any]] = [
    {
        "prompt_id": "boss",
        "text": "well, what did the boss say?",
        "accepted": ["bem, o que o chefe disse?", "bem, o que disse o chefe?"],
    },
    {
        "prompt_id": "cat",
        "text": "the cat is sleeping.",
        "accepted": ["o gato está dormindo.", "o gato dorme."],
    },
]


def put_prompts(client: TestClient, auth: Auth, course: str = "en_pt") -> dict[str, Any]:
    response = client.put(f"/v1/courses/{course}/prompts", json=PROMPTS, headers=auth(Role.ADMIN))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def report(
    client: TestClient,
    auth: Auth,
    answer: str,
    *,
    prompt_id: str = "boss",
    reporter: str = "learner-1",
    course: str = "en_pt",
) -> Any:
    return client.post(
        "/v1/reports",
        json={"course": course, "prompt_id": prompt_id, "answer": answer, "reporter_id": reporter},
        headers=auth(Role.APP),
    )


def queue(client: TestClient, auth: Auth, **params: Any) -> dict[str, Any]:
    response = client.get(
        "/v1/reports/queue", params={"course": "en_pt", **params}, headers=auth(Role.CONTRIBUTOR)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def course(client: TestClient, auth: Auth) -> None:
    put_prompts(client, auth)


# --- prompts -------------------------------------------------------------------------------


def test_admin_loads_prompts_and_a_second_put_updates(client: TestClient, auth: Auth) -> None:
    assert put_prompts(client, auth) == {
        "course": "en_pt",
        "created": 2,
        "updated": 0,
        "prompts": 2,
        "closed_reports": 0,
    }
    again = put_prompts(client, auth)
    assert (again["created"], again["updated"], again["prompts"]) == (0, 2, 2)
    courses = client.get("/v1/courses", headers=auth(Role.CONTRIBUTOR)).json()
    assert courses == [{"course": "en_pt", "prompts": 2, "open_reports": 0}]


@pytest.mark.parametrize("role", [Role.CONTRIBUTOR, Role.APP, Role.RESEARCHER])
def test_only_admins_load_prompts(client: TestClient, auth: Auth, role: Role) -> None:
    response = client.put("/v1/courses/en_pt/prompts", json=PROMPTS, headers=auth(role))
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_prompts_without_translations_are_refused(client: TestClient, auth: Auth) -> None:
    body = [{"prompt_id": "x", "text": "x", "accepted": []}]
    response = client.put("/v1/courses/en_pt/prompts", json=body, headers=auth(Role.ADMIN))
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"


def test_putting_a_reported_answer_closes_its_report(
    client: TestClient, auth: Auth, course: None
) -> None:
    assert report(client, auth, "bem, o que o patrão disse?").status_code == 201
    prompts = [dict(PROMPTS[0], accepted=[*PROMPTS[0]["accepted"], "bem, o que o patrão disse"])]
    response = client.put("/v1/courses/en_pt/prompts", json=prompts, headers=auth(Role.ADMIN))
    assert response.json()["closed_reports"] == 1
    assert queue(client, auth)["items"] == []
    assert report(client, auth, "Bem, o que o patrão disse!").json() == {
        "status": "already_accepted",
        "report_id": None,
        "times_reported": None,
    }


# --- intake --------------------------------------------------------------------------------


def test_new_answer_opens_a_report(client: TestClient, auth: Auth, course: None) -> None:
    response = report(client, auth, "bem, o que o patrão disse?")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert body["times_reported"] == 1
    assert len(body["report_id"]) == 32


def test_identical_answers_join_one_report(client: TestClient, auth: Auth, course: None) -> None:
    first = report(client, auth, "bem, o que o patrão disse?", reporter="a").json()
    second = report(client, auth, "Bem,  o que o PATRÃO disse!", reporter="b")
    assert second.status_code == 200
    assert second.json() == {
        "status": "queued",
        "report_id": first["report_id"],
        "times_reported": 2,
    }
    # The same learner sending the same answer again is not a new voice.
    again = report(client, auth, "bem o que o patrão disse", reporter="b").json()
    assert again["times_reported"] == 2
    items = queue(client, auth)["items"]
    assert [(i["answer"], i["times_reported"]) for i in items] == [
        ("bem, o que o patrão disse?", 2)
    ]


def test_accents_make_a_different_answer(client: TestClient, auth: Auth, course: None) -> None:
    one = report(client, auth, "o gato esta dormindo", prompt_id="cat").json()
    assert one["status"] == "queued"
    assert report(client, auth, "o gato está dormindo", prompt_id="cat").json() == {
        "status": "already_accepted",
        "report_id": None,
        "times_reported": None,
    }


@pytest.mark.parametrize(
    ("course_name", "prompt_id"), [("en_xx", "boss"), ("en_pt", "no-such-prompt")]
)
def test_unknown_course_or_prompt_is_404(
    client: TestClient, auth: Auth, course: None, course_name: str, prompt_id: str
) -> None:
    response = report(client, auth, "qualquer coisa", prompt_id=prompt_id, course=course_name)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("answer", ["", "   ", "?!…", "palavra " * 300])
def test_empty_or_oversized_answers_are_422(
    client: TestClient, auth: Auth, course: None, answer: str
) -> None:
    response = report(client, auth, answer)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_input"
    assert "palavra" not in response.text  # the answer is not echoed back


def test_only_the_app_role_reports(client: TestClient, auth: Auth, course: None) -> None:
    body = {"course": "en_pt", "prompt_id": "boss", "answer": "oi", "reporter_id": "x"}
    assert client.post("/v1/reports", json=body).status_code == 401
    assert client.post("/v1/reports", json=body, headers=auth(Role.CONTRIBUTOR)).status_code == 403


# --- queue ---------------------------------------------------------------------------------


def test_queue_is_best_first_with_nearest_translation_and_diff(
    client: TestClient, auth: Auth, course: None
) -> None:
    for reporter in ("a", "b", "c"):
        report(client, auth, "bem, o que o patrão disse?", reporter=reporter)
    report(client, auth, "bem o que o chefe dise", reporter="d")
    body = queue(client, auth)
    assert body["open_reports"] == 2
    assert body["scorer"]["kind"] == "heuristic"
    assert "times_reported" in body["scorer"]["note"]
    top, second = body["items"]
    assert top["score"] > second["score"]
    assert top["answer"] == "bem, o que o patrão disse?"
    assert top["prompt"] == "well, what did the boss say?"
    assert top["nearest_accepted"] == "bem, o que o chefe disse?"
    assert top["diff"] == [
        {"op": "same", "text": "bem o que o"},
        {"op": "missing", "text": "chefe"},
        {"op": "extra", "text": "patrão"},
        {"op": "same", "text": "disse"},
    ]
    assert second["diff"][-2:] == [
        {"op": "missing", "text": "disse"},
        {"op": "extra", "text": "dise"},
    ]


def test_queue_never_shows_reporter_ids(client: TestClient, auth: Auth, course: None) -> None:
    report(client, auth, "bem, o que o patrão disse?", reporter="learner-secret-42")
    response = client.get(
        "/v1/reports/queue", params={"course": "en_pt"}, headers=auth(Role.CONTRIBUTOR)
    )
    assert "learner-secret-42" not in response.text
    assert "reporter" not in response.text


def test_queue_pages_with_a_cursor(client: TestClient, auth: Auth, course: None) -> None:
    answers = [f"bem, o que o chefe disse {word}" for word in ("ontem", "hoje", "agora", "já")]
    for number, answer in enumerate(answers):
        for reporter in range(number + 1):
            report(client, auth, answer, reporter=f"r{reporter}")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
        body = queue(client, auth, **params)
        seen += [item["answer"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == answers[::-1]


def test_queue_of_unknown_course_and_bad_cursor(
    client: TestClient, auth: Auth, course: None
) -> None:
    headers = auth(Role.CONTRIBUTOR)
    missing = client.get("/v1/reports/queue", params={"course": "en_xx"}, headers=headers)
    assert missing.status_code == 404
    bad = client.get(
        "/v1/reports/queue", params={"course": "en_pt", "cursor": "nonsense"}, headers=headers
    )
    assert bad.status_code == 422
    assert (
        client.get(
            "/v1/reports/queue", params={"course": "en_pt"}, headers=auth(Role.APP)
        ).status_code
        == 403
    )


# --- decisions and outbox ------------------------------------------------------------------


def decide(client: TestClient, auth: Auth, report_id: str, accept: bool) -> Any:
    return client.post(
        f"/v1/reports/{report_id}/decision",
        json={"accept": accept},
        headers=auth(Role.CONTRIBUTOR),
    )


def test_accepting_adds_the_answer_and_thanks_each_reporter(
    client: TestClient, auth: Auth, course: None
) -> None:
    report_id = report(client, auth, "bem, o que o patrão disse?", reporter="ana").json()[
        "report_id"
    ]
    report(client, auth, "bem, o que o patrão disse?", reporter="bo")
    other = report(client, auth, "bem, o que o patrão falou?", reporter="cy").json()
    response = decide(client, auth, report_id, True)
    assert response.status_code == 200
    assert response.json() == {
        "report_id": report_id,
        "accepted": True,
        "rescored": 1,
        "thank_you_notices": 2,
    }
    # Later identical reports are not queued again.
    assert report(client, auth, "Bem, o que o patrão disse", reporter="dee").json()["status"] == (
        "already_accepted"
    )
    remaining = queue(client, auth)["items"]
    assert [item["report_id"] for item in remaining] == [other["report_id"]]
    # The open report of the prompt now sees the accepted answer as its nearest translation.
    assert remaining[0]["nearest_accepted"] == "bem, o que o patrão disse?"

    outbox = client.get("/v1/reports/outbox", headers=auth(Role.ADMIN)).json()["items"]
    assert sorted(n["reporter_id"] for n in outbox) == ["ana", "bo"]
    assert {n["answer"] for n in outbox} == {"bem, o que o patrão disse?"}
    assert {n["prompt"] for n in outbox} == {"well, what did the boss say?"}
    for notice in outbox:
        ack = client.post(f"/v1/reports/outbox/{notice['id']}/ack", headers=auth(Role.ADMIN))
        assert ack.status_code == 204
    assert client.get("/v1/reports/outbox", headers=auth(Role.ADMIN)).json() == {"items": []}
    again = client.post(f"/v1/reports/outbox/{outbox[0]['id']}/ack", headers=auth(Role.ADMIN))
    assert again.status_code == 404


def test_rejecting_sends_no_thanks_and_later_reports_are_not_queued(
    client: TestClient, auth: Auth, course: None
) -> None:
    report_id = report(client, auth, "o que o chefe disse bem", reporter="ana").json()["report_id"]
    assert decide(client, auth, report_id, False).json()["thank_you_notices"] == 0
    assert client.get("/v1/reports/outbox", headers=auth(Role.ADMIN)).json() == {"items": []}
    later = report(client, auth, "O que o chefe disse, bem.", reporter="bo")
    assert later.status_code == 200
    assert later.json()["status"] == "already_rejected"
    assert queue(client, auth)["items"] == []


def test_second_decision_is_409_and_unknown_report_404(
    client: TestClient, auth: Auth, course: None
) -> None:
    report_id = report(client, auth, "bem, o que o patrão disse?").json()["report_id"]
    assert decide(client, auth, report_id, False).status_code == 200
    second = decide(client, auth, report_id, True)
    assert second.status_code == 409
    assert second.json()["code"] == "already_decided"
    assert decide(client, auth, "0" * 32, True).status_code == 404


def test_outbox_is_for_admins_only(client: TestClient, auth: Auth) -> None:
    for role in (Role.CONTRIBUTOR, Role.APP):
        assert client.get("/v1/reports/outbox", headers=auth(role)).status_code == 403


def test_concurrent_decisions_on_one_report_have_one_winner(
    client: TestClient, auth: Auth, app: FastAPI, course: None
) -> None:
    report_id = report(client, auth, "bem, o que o patrão disse?", reporter="ana").json()[
        "report_id"
    ]
    threads = 8
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    lock = threading.Lock()

    def decide_now(accept: bool) -> None:
        barrier.wait()
        status = decide(client, auth, report_id, accept).status_code
        with lock:
            statuses.append(status)

    workers = [threading.Thread(target=decide_now, args=(n % 2 == 0,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(statuses) == [200] + [409] * (threads - 1)
    outbox = client.get("/v1/reports/outbox", headers=auth(Role.ADMIN)).json()["items"]
    status = report(client, auth, "bem, o que o patrão disse?", reporter="bo").json()["status"]
    # Whichever decision won, its consequences happened exactly once.
    assert (status, len(outbox)) in {("already_accepted", 1), ("already_rejected", 0)}


# --- console shell -------------------------------------------------------------------------


def test_console_shell_is_public_but_holds_no_data(
    client: TestClient, auth: Auth, course: None
) -> None:
    report(client, auth, "bem, o que o patrão disse?", reporter="learner-secret-42")
    page = client.get("/review")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "Contributor key" in page.text
    assert "patrão" not in page.text
    assert "learner-secret-42" not in page.text
    script = client.get("/review/static/console.js")
    assert script.status_code == 200
    assert "X-API-Key" in script.text
    assert client.get("/review/static/console.css").status_code == 200
    assert client.get("/review/static/../tables.py").status_code == 404
    assert client.get("/review/static/review.html").status_code == 404
    # Without a key the data routes refuse.
    assert client.get("/v1/courses").status_code == 401
    assert client.get("/v1/reports/queue", params={"course": "en_pt"}).status_code == 401


def test_concurrent_identical_reports_join_one_report(
    client: TestClient, auth: Auth, course: None
) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    lock = threading.Lock()

    def send(number: int) -> None:
        barrier.wait()
        status = report(client, auth, "Bem, o que o patrão disse?", reporter=f"r{number}")
        with lock:
            statuses.append(status.status_code)

    workers = [threading.Thread(target=send, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(statuses) == [200] * (threads - 1) + [201]
    items = queue(client, auth)["items"]
    assert [(item["answer"], item["times_reported"]) for item in items] == [
        ("Bem, o que o patrão disse?", threads)
    ]
