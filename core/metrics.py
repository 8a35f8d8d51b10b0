"""Prometheus metrics shared by the service (counters only: no per-clip labels, P4)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

REQUESTS = Counter("chorus_http_requests", "HTTP requests answered", ["route", "status"])


def render_metrics() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
