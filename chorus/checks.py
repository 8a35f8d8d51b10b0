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
from core.errors import MinorRefused
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


CHECKS: tuple[Check, ...] = (
    Check("metrics_exposition", ("P2", "P4"),
          "the metrics exposition has no creation times and counts no minors",
          check_metrics_exposition),
)

EXPLANATIONS: Mapping[str, Explanation] = {
    "metrics_created_series": Explanation(
        cause="a counter registered outside core.metrics, which turns prometheus_client's "
        "*_created series off",
        remedy="register every metric through core.metrics.counter",
    ),
    "metrics_minor_counter": Explanation(
        cause="a metric labels refused requests by their problem code, the age gate's "
        "included",
        remedy="count the age gate's refusals under a generic label, or not at all",
    ),
}
