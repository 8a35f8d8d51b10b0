"""Ingest counters: totals only, never a label that could name a learner or a clip (P3, P4)."""

from __future__ import annotations

from prometheus_client import Counter

UPLOADS = Counter(
    "chorus_ingest_uploads",
    "Clip uploads answered, by outcome (accepted or the refusal's problem code)",
    ["outcome"],
)
METADATA_FIELDS_DROPPED = Counter(
    "chorus_ingest_metadata_fields_dropped",
    "Metadata fields sent by the app that the allowlist dropped unread",
)
WITHDRAWN_CLIPS = Counter(
    "chorus_ingest_withdrawn_clips", "Pending clips removed by consent withdrawals"
)
ORPHANS_SWEPT = Counter(
    "chorus_ingest_orphan_objects_swept", "Pending objects deleted because no row refers to them"
)
