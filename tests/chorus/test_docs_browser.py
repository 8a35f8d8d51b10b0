"""/docs and /redoc in headless Chromium with every other host unreachable: both render, with
the Authorize button of the security schemes, and the page asks no other host for anything.

Needs the Debian ``chromium`` package (``make system-deps``); Playwright drives it through
``executable_path``. The screenshot goes to tests/artifacts/api-docs.png.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from chorus.app import create_app
from core.settings import Settings
from tests.live_server import serving

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# Name resolution fails for every host but loopback: the network is as good as unplugged.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "tests" / "artifacts"


def test_docs_render_offline_and_ask_no_other_host(
    make_settings: Callable[..., Settings],
) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: make system-deps (apt-get install -y chromium)")
    from playwright.sync_api import Route, expect, sync_playwright

    app = create_app(make_settings())
    with serving(app) as base, sync_playwright() as playwright:
        origin = urlsplit(base).netloc
        elsewhere: list[str] = []

        def only_this_origin(route: Route) -> None:
            url = route.request.url
            if urlsplit(url).netloc == origin or url.startswith("data:"):
                route.continue_()
            else:
                elsewhere.append(url)
                route.abort()

        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", only_this_origin)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))

            page.goto(f"{base}/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Chorus")
            expect(page.locator(".swagger-ui .btn.authorize")).to_be_visible()
            clips = page.locator(".opblock-summary-path", has_text="/v1/clips")
            expect(clips.first).to_be_visible()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "api-docs.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.stat().st_size > 10_000

            page.click(".swagger-ui .btn.authorize")
            dialog = page.locator(".swagger-ui .dialog-ux")
            expect(dialog).to_contain_text("ConsentToken")
            expect(dialog).to_contain_text("RoleKey")

            page.goto(f"{base}/redoc")
            expect(page.locator("h1").first).to_contain_text("Chorus")
            upload = page.locator("h2", has_text="Upload a consented recording of an exercise")
            expect(upload).to_be_visible()
        finally:
            browser.close()
    assert elsewhere == [], f"the docs asked other hosts: {elsewhere}"
    assert errors == []
