"""The review console in headless Chromium: sign in, review three reports by click and key.

Needs the Debian ``chromium`` package (see ``tests/reports_ml/browser.py``). Screenshots of the
console (laptop and phone widths) are written to tests/artifacts/, and also to docs/ when
CHORUS_UPDATE_DOC_SCREENSHOTS=1 (so a test run leaves the tree clean).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from chorus.app import create_app
from core.auth import Role
from core.settings import Settings
from tests.reports_ml.browser import CHROMIUM, CHROMIUM_ARGS, require, save_screenshot, serve_app

pytestmark = pytest.mark.browser

PROMPTS = [
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
# answer, prompt, how many learners sent it: the queue (count heuristic) shows them in this order.
REPORTS = [
    ("bem, o que o patrão disse?", "boss", 4),
    ("o gato dorme agora", "cat", 3),
    ("o gato esta dormindo", "cat", 2),
    ("bem o que o chefe dise", "boss", 1),
]


@pytest.fixture
def live_server(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, dict[Role, str]]]:
    """The app under uvicorn on a free loopback port, with one key per role."""
    settings = make_settings()
    with serve_app(create_app(settings), settings) as served:
        yield served


def _seed(base: str, keys: dict[Role, str]) -> None:
    with httpx.Client(base_url=base, timeout=30) as http:
        admin = {"X-API-Key": keys[Role.ADMIN]}
        assert http.put("/v1/courses/en_pt/prompts", json=PROMPTS, headers=admin).is_success
        for answer, prompt_id, count in REPORTS:
            for learner in range(count):
                body = {
                    "course": "en_pt",
                    "prompt_id": prompt_id,
                    "answer": answer,
                    "reporter_id": f"learner-{learner}",
                }
                app_key = {"X-API-Key": keys[Role.APP]}
                response = http.post("/v1/reports", json=body, headers=app_key)
                assert response.is_success, response.text


def _intake_status(base: str, keys: dict[Role, str], answer: str, prompt_id: str) -> Any:
    body = {"course": "en_pt", "prompt_id": prompt_id, "answer": answer, "reporter_id": "late"}
    response = httpx.post(
        f"{base}/v1/reports", json=body, headers={"X-API-Key": keys[Role.APP]}, timeout=30
    )
    return response.json()["status"]


def test_contributor_reviews_three_reports_by_click_and_keyboard(
    live_server: tuple[str, dict[Role, str]],
) -> None:
    require(CHROMIUM, "chromium")
    from playwright.sync_api import expect, sync_playwright

    base, keys = live_server
    _seed(base, keys)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/review")
            expect(page.locator("#login")).to_be_visible()
            # No data without a key: the queue is hidden until sign-in.
            expect(page.locator("#console")).to_be_hidden()

            page.fill("#key", keys[Role.CONTRIBUTOR])
            page.click("#login button[type=submit]")
            answer = page.locator("#answer")
            expect(answer).to_have_text("bem, o que o patrão disse?")
            expect(page.locator("#course")).to_have_value("en_pt")
            expect(page.locator("#diff ins")).to_have_text("patrão")
            expect(page.locator("#diff del")).to_have_text("chefe")
            expect(page.locator("#items li")).to_have_count(4)
            save_screenshot(page, "review-console.png")

            # 1. accept the best report with a click; the next one appears.
            page.click("#accept")
            expect(page.locator("#status")).to_have_text("Accepted: bem, o que o patrão disse?")
            expect(answer).to_have_text("o gato dorme agora")
            expect(page.locator("#items li")).to_have_count(3)

            # 2. reject it with the keyboard.
            page.keyboard.press("r")
            expect(page.locator("#status")).to_have_text("Rejected: o gato dorme agora")
            expect(answer).to_have_text("o gato esta dormindo")

            # 3. move down and back up with j/k and arrows, then accept with "a".
            page.keyboard.press("j")
            expect(answer).to_have_text("bem o que o chefe dise")
            page.keyboard.press("ArrowUp")
            expect(answer).to_have_text("o gato esta dormindo")
            page.keyboard.press("ArrowDown")
            page.keyboard.press("k")
            expect(answer).to_have_text("o gato esta dormindo")
            page.keyboard.press("a")
            expect(page.locator("#status")).to_have_text("Accepted: o gato esta dormindo")
            expect(answer).to_have_text("bem o que o chefe dise")
            expect(page.locator("#items li")).to_have_count(1)

            # The key survives a reload, and signing out forgets it.
            page.reload()
            expect(answer).to_have_text("bem o que o chefe dise")

            # Another browser (its own storage) signs in with the key.
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.goto(f"{base}/review")
            phone.fill("#key", keys[Role.CONTRIBUTOR])
            phone.click("#login button[type=submit]")
            expect(phone.locator("#answer")).to_have_text("bem o que o chefe dise")
            box = phone.locator("#reject").bounding_box()
            assert box is not None
            assert box["x"] + box["width"] <= 390, "buttons overflow a phone"
            save_screenshot(phone, "review-console-phone.png")

            page.click("#logout")
            expect(page.locator("#login")).to_be_visible()
            assert page.evaluate("localStorage.getItem('chorus.contributorKey')") is None
            assert errors == []
        finally:
            browser.close()

    assert _intake_status(base, keys, "Bem, o que o patrão disse!", "boss") == "already_accepted"
    assert _intake_status(base, keys, "o gato esta dormindo", "cat") == "already_accepted"
    assert _intake_status(base, keys, "o gato dorme agora", "cat") == "already_rejected"
