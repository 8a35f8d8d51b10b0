"""The home page a visitor lands on, and the site's icon."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_home_page_links_the_docs_the_review_console_and_the_health_routes(
    client: TestClient,
) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    links = set(re.findall(r'<a href="([^"]+)"', response.text))
    assert {"docs", "review", "healthz", "readyz"} <= links
    # Every link it shows answers without a key, except the counters, which ask for one.
    for link in sorted(links - {"metrics"}):
        assert client.get(f"/{link}").status_code == 200, link
    assert client.get("/metrics").status_code == 401


def test_favicon_is_an_icon_and_the_home_page_is_not_in_the_api_document(
    client: TestClient,
) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/vnd.microsoft.icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # the ICO header
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert "/favicon.ico" not in paths
