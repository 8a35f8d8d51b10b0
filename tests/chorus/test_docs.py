"""The API documentation pages load everything from the service itself, never another host."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from chorus.docs import ASSETS_URL

_LINKS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


def _links(html: str) -> list[str]:
    return [a or b for a, b in _LINKS.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_the_services_own_origin(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    links = _links(response.text)
    assert links, "the page loads no script at all"
    for link in links:
        parts = urlsplit(link)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{page} loads {link} from elsewhere"
        assert link.startswith("/"), link
    # Every script and style the page names is served, and is the real asset.
    scripts = [link for link in links if link.endswith(".js")]
    assert scripts
    assert all(link.startswith(f"{ASSETS_URL}/") for link in scripts)
    for link in links:
        if link.startswith(ASSETS_URL):
            asset = client.get(link)
            assert asset.status_code == 200, link
            assert len(asset.content) > 1000, link
    # And the browser is told to fetch from nowhere else, whatever the bundles would like.
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "img-src 'self' data:" in policy
    assert "fonts.googleapis" not in response.text
    assert "cdn.jsdelivr" not in response.text


def test_swagger_ui_sends_the_schema_to_no_online_validator(client: TestClient) -> None:
    html = client.get("/docs").text
    assert '"validatorUrl": null' in html


def test_openapi_document_is_what_the_docs_page_loads(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "'/openapi.json'" in html or '"/openapi.json"' in html
    assert client.get("/openapi.json").json()["info"]["title"] == "Chorus"
