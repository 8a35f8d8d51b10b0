"""The review console behind Debian's nginx with the repository's configuration, in Chromium.

That configuration passes ``Host`` without the port the browser used; the page's own links must
still reach its stylesheet and script. Also here: queue numbers of two digits, course counts that
follow decisions (this tab's and other contributors'), a key that every tab shares until
"Sign out", and forwarded-scheme handling for TLS proxies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chorus.app import create_app
from core.auth import Role
from core.settings import Settings
from tests.reports_ml.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NGINX,
    nginx_in_front,
    require,
    save_screenshot,
    serve_app,
)

pytestmark = pytest.mark.browser

ANSWERS = 12  # a queue of two-digit positions
PROMPTS = [
    {"prompt_id": "house", "text": "the house is big.", "accepted": ["a casa é grande."]},
]
OTHER_COURSE = [{"prompt_id": "dog", "text": "the dog runs.", "accepted": ["el perro corre."]}]


def _seed(base: str, keys: dict[Role, str]) -> list[str]:
    """Twelve reports in en_pt (the n-th sent by 13 - n learners, so that is the queue's order)
    and one in en_es; returns en_pt's answers in queue order."""
    answers = [f"a casa é grande {'!' * n}x{n}" for n in range(1, ANSWERS + 1)]
    with httpx.Client(base_url=base, timeout=30) as http:
        admin = {"X-API-Key": keys[Role.ADMIN]}
        app_key = {"X-API-Key": keys[Role.APP]}
        assert http.put("/v1/courses/en_pt/prompts", json=PROMPTS, headers=admin).is_success
        assert http.put("/v1/courses/en_es/prompts", json=OTHER_COURSE, headers=admin).is_success
        for position, answer in enumerate(answers):
            for learner in range(ANSWERS + 1 - position):
                body = {
                    "course": "en_pt",
                    "prompt_id": "house",
                    "answer": answer,
                    "reporter_id": f"learner-{learner}",
                }
                assert http.post("/v1/reports", json=body, headers=app_key).is_success
        body = {
            "course": "en_es",
            "prompt_id": "dog",
            "answer": "el perro corrre",
            "reporter_id": "learner-0",
        }
        assert http.post("/v1/reports", json=body, headers=app_key).is_success
    return answers


def _queue(base: str, keys: dict[Role, str]) -> Any:
    answer = httpx.get(
        f"{base}/v1/reports/queue",
        params={"course": "en_pt"},
        headers={"X-API-Key": keys[Role.CONTRIBUTOR]},
        timeout=30,
    )
    assert answer.status_code == 200
    return answer.json()


def test_console_behind_nginx_styled_numbered_counted_and_signed_in_across_tabs(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    require(CHROMIUM, "chromium")
    require(NGINX, "nginx")
    from playwright.sync_api import expect, sync_playwright

    settings = make_settings(forwarded_allow_ips="127.0.0.1")
    with (
        serve_app(create_app(settings), settings) as (upstream, keys),
        nginx_in_front(upstream, tmp_path / "nginx") as base,
        sync_playwright() as playwright,
    ):
        answers = _seed(upstream, keys)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            errors: list[str] = []
            failed: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
            page.goto(f"{base}/review")

            # Styled: the stylesheet came through nginx (the bar is a flex row, the console's
            # hidden parts stay hidden), and the script runs (sign-in works).
            assert page.evaluate("getComputedStyle(document.querySelector('.bar')).display") == (
                "flex"
            )
            page.fill("#key", keys[Role.CONTRIBUTOR])
            page.click("#login button[type=submit]")
            answer = page.locator("#answer")
            expect(answer).to_have_text("el perro corrre")  # en_es, the first course
            page.select_option("#course", "en_pt")
            expect(answer).to_have_text(answers[0])
            items = page.locator("#items li")
            expect(items).to_have_count(ANSWERS)

            # Two-digit numbers are shown whole, inside the queue's scroll box.
            queue_box = page.locator("#items").bounding_box()
            assert queue_box is not None
            for position in (9, 10, 11):
                rank = items.nth(position).locator(".rank")
                rank.scroll_into_view_if_needed()
                expect(rank).to_have_text(str(position + 1))
                box = rank.bounding_box()
                assert box is not None
                assert queue_box["x"] <= box["x"], f"number {position + 1} is clipped"
                clipped = rank.evaluate("e => e.scrollWidth > e.clientWidth")
                assert not clipped, f"number {position + 1} is cut"

            # Counts follow this tab's decisions ...
            course = page.locator("#course option[value=en_pt]")
            expect(course).to_have_text(f"en_pt ({ANSWERS} open)")
            page.click("#reject")
            expect(page.locator("#status")).to_have_text(f"Rejected: {answers[0]}")
            expect(course).to_have_text(f"en_pt ({ANSWERS - 1} open)")
            expect(page.locator("#count")).to_have_text(f"({ANSWERS - 1} open)")
            # ... and other contributors' (refreshed when the tab is shown, and every 30 s): the
            # report under review stays selected while it is open, and leaves when decided.
            page.keyboard.press("j")
            expect(answer).to_have_text(answers[2])
            page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
            expect(answer).to_have_text(answers[2])
            other = _queue(upstream, keys)["items"][0]["report_id"]
            decided = httpx.post(
                f"{upstream}/v1/reports/{other}/decision",
                json={"accept": False},
                headers={"X-API-Key": keys[Role.CONTRIBUTOR]},
                timeout=30,
            )
            assert decided.status_code == 200, decided.text
            page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
            expect(course).to_have_text(f"en_pt ({ANSWERS - 2} open)")
            expect(page.locator("#count")).to_have_text(f"({ANSWERS - 2} open)")
            expect(items).to_have_count(ANSWERS - 2)
            expect(answer).to_have_text(answers[2])
            expect(page.locator("#course option[value=en_es]")).to_have_text("en_es (1 open)")
            save_screenshot(page, "review-console-nginx.png")

            # A new tab is signed in already; signing out there signs out this one too.
            second = context.new_page()
            second.goto(f"{base}/review")
            expect(second.locator("#console")).to_be_visible()
            expect(second.locator("#items li")).to_have_count(ANSWERS - 2)
            second.click("#logout")
            expect(second.locator("#login")).to_be_visible()
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("#console")).to_be_hidden()
            assert page.evaluate("localStorage.getItem('chorus.contributorKey')") is None
            third = context.new_page()
            third.goto(f"{base}/review")
            expect(third.locator("#login")).to_be_visible()
            assert errors == []
            assert failed == []
        finally:
            browser.close()


@pytest.mark.parametrize(
    ("trusted", "scheme"), [("127.0.0.1", "https"), (None, "http")], ids=["proxy", "no-proxy"]
)
def test_a_tls_proxys_forwarded_scheme_is_trusted_only_when_configured(
    make_settings: Callable[..., Settings], trusted: str | None, scheme: str
) -> None:
    settings = make_settings(forwarded_allow_ips=trusted)
    with serve_app(create_app(settings), settings) as (base, _keys):
        # A redirect (the console's address with a trailing slash) names the scheme it heard.
        answer = httpx.get(f"{base}/review/", headers={"X-Forwarded-Proto": "https"}, timeout=30)
    assert answer.status_code == 307
    assert answer.headers["location"].startswith(f"{scheme}://127.0.0.1:"), answer.headers


def test_console_links_are_relative_whatever_host_the_proxy_sends(
    make_settings: Callable[..., Settings],
) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(make_settings())) as client:
        page = client.get("/review", headers={"Host": "chorus.example.org"}).text
    assert 'href="review/static/console.css"' in page
    assert 'src="review/static/console.js"' in page
    assert "chorus.example.org" not in page
