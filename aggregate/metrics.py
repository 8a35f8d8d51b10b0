"""Aggregate counters: totals only, never a label that could name a learner or a clip (P3, P4)."""

from __future__ import annotations

from core.metrics import counter

KEY_LOST_BUCKETS = counter(
    "chorus_buckets_key_lost",
    "Buckets purged because their memory-only key was lost (a reboot, a key-store flush)",
)
KEY_LOST_CLIPS = counter(
    "chorus_buckets_key_lost_clips",
    "Pending clips purged with a bucket whose memory-only key was lost",
)
