"""Prometheus counters of the service and their exposition (P2, P4, P11).

Counters only, totals only: no label names a learner or a clip, and no ``*_created`` series,
whose creation time per label set would say when, say, the first withdrawal arrived (P4).
A request refused by the age gate is left out of every counter (``leave_uncounted``), since a
minor's attempt is neither stored, counted nor logged (P2). The exposition holds Chorus's own
counters only (no process or garbage-collector series, whose steps follow each request) and is
served to operator and auditor keys only (P11, ``chorus.app``).

Under ``chorus serve --workers N`` each process writes its counters to files in
``PROMETHEUS_MULTIPROC_DIR`` and the exposition sums them (prometheus_client multiprocess
mode), whichever worker answers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_UNCOUNTED = "chorus.uncounted"
# mkdtemp makes a fresh, unguessable, 0700 directory in it, so a shared parent is safe.
_TMPFS = Path("/dev/shm")  # noqa: S108

# Before any counter exists, in every process that has one (they are all made below).
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """A counter in Chorus's own registry, the one ``render_metrics`` exposes."""
    return Counter(name, documentation, labelnames, registry=REGISTRY)


REQUESTS = counter("chorus_http_requests", "HTTP requests answered", ["route", "status"])


def leave_uncounted(scope: MutableMapping[str, Any]) -> None:
    """Keep this request out of every counter, the request count included (P2)."""
    scope[_UNCOUNTED] = True


def is_counted(scope: MutableMapping[str, Any]) -> bool:
    return not scope.get(_UNCOUNTED, False)


def render_metrics() -> tuple[bytes, str]:
    """The text exposition: this process's counters, or every process's sums in multiprocess
    mode."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = REGISTRY
    if os.environ.get(MULTIPROC_DIR_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


@contextlib.contextmanager
def multiprocess_metrics_dir() -> Iterator[Path]:
    """A fresh private directory (mode 0700, on tmpfs where there is one) named in
    ``PROMETHEUS_MULTIPROC_DIR`` for the processes started inside the block; removed after.

    Set it before the processes that count start: prometheus_client picks its value store when
    it is first imported.
    """
    parent = _TMPFS if _TMPFS.is_dir() and os.access(_TMPFS, os.W_OK | os.X_OK) else None
    directory = Path(tempfile.mkdtemp(prefix="chorus-metrics-", dir=parent))
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    os.environ[MULTIPROC_DIR_ENV] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)
