"""Ingest counters: totals only, never a label that could name a learner or a clip (P3, P4).

An upload refused by the age gate is counted nowhere (P2): ``ingest.routes`` leaves it out of
``UPLOADS`` and of the request count, so ``minor`` is never an ``outcome``.
"""

from __future__ import annotations

from core.metrics import counter

UPLOADS = counter(
    "chorus_ingest_uploads",
    "Clip uploads answered, by outcome (accepted or the refusal's problem code; "
    "age-gate refusals are not counted)",
    ["outcome"],
)
METADATA_FIELDS_DROPPED = counter(
    "chorus_ingest_metadata_fields_dropped",
    "Metadata fields sent by the app that the allowlist dropped unread",
)
WITHDRAWN_CLIPS = counter(
    "chorus_ingest_withdrawn_clips", "Pending clips removed by consent withdrawals"
)
ORPHANS_SWEPT = counter(
    "chorus_ingest_orphan_objects_swept", "Pending objects deleted because no row refers to them"
)
