"""Audit checks of the metrics exposition (P2, P4), which only the composition root can see
whole: the counters of every domain, summed over every worker process.

A ``*_created`` sample would say when a label set was first counted, e.g. when the first
upload of an outcome or the first withdrawal arrived (P4); a label value naming the age-gate
refusal would count minors' attempts (P2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families

import ingest.metrics  # noqa: F401  (its counters are part of the exposition)
from core.errors import MinorRefused, Unavailable
from core.metrics import render_metrics
from policies.checks import Check
from policies.context import AuditContext
from policies.findings import Explanation, Finding


def check_metrics_exposition(_ctx: AuditContext) -> Iterable[Finding]:
    """This process's ``/metrics`` exposition has no creation times and counts no minors."""
    body, _content_type = render_metrics()
    created: set[str] = set()
    minor: set[str] = set()
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                created.add(sample.name)
            if MinorRefused.code in sample.labels.values():
                minor.add(sample.name)
    for name in sorted(created):
        yield Finding(
            "metrics_created_series",
            "P4",
            f"the metrics exposition has a creation-time series {name}",
            name,
        )
    for name in sorted(minor):
        yield Finding(
            "metrics_minor_counter",
            "P2",
            f"the metrics series {name} counts requests refused by the age gate "
            f"({MinorRefused.code!r})",
            name,
        )


def check_key_store_persistence(ctx: AuditContext) -> Iterable[Finding]:
    """The bucket-key store keeps nothing on disk right now (P3, P4): a Redis told to persist
    at run time would write every bucket key, and with them the tags' meaning, into a dump."""
    if ctx.key_store is None:
        return
    try:
        ctx.key_store.ensure_memory_only()
    except Unavailable as exc:
        yield Finding(
            "key_store_persists",
            "P3",
            f"the bucket-key store would keep keys on disk: {exc.detail}. Likely cause: "
            "`CONFIG SET appendonly yes` or a `save` schedule on the Redis server; remedy: "
            "`CONFIG SET appendonly no` and `CONFIG SET save ''`, then delete its dump files",
            "key_store",
        )


CHECKS: tuple[Check, ...] = (
    Check(
        "metrics_exposition",
        ("P2", "P4"),
        "the metrics exposition has no creation times and counts no minors",
        check_metrics_exposition,
    ),
    Check(
        "key_store_persistence",
        ("P3", "P4"),
        "the bucket-key store keeps nothing on disk",
        check_key_store_persistence,
    ),
)

EXPLANATIONS: Mapping[str, Explanation] = {
    "key_store_persists": Explanation(
        cause="the Redis key store was told to persist at run time (CONFIG SET appendonly "
        "yes, or a save schedule), or started from a configuration that persists",
        remedy="CONFIG SET appendonly no and CONFIG SET save '', then delete its dump and "
        "append-only files; key writes answer 503 until then",
    ),
    "metrics_created_series": Explanation(
        cause="a counter registered outside core.metrics, which turns prometheus_client's "
        "*_created series off",
        remedy="register every metric through core.metrics.counter",
    ),
    "metrics_minor_counter": Explanation(
        cause="a metric labels refused requests by their problem code, the age gate's included",
        remedy="count the age gate's refusals under a generic label, or not at all",
    ),
}
