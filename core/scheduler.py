"""The in-process job scheduler (APScheduler 3) that runs releases and sweeps."""

from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

INTERVALS = {"hourly": 3600, "daily": 86_400, "weekly": 604_800}


def interval_trigger(name_or_seconds: str) -> IntervalTrigger:
    """``hourly``/``daily``/``weekly`` or a number of seconds (for tests and demos)."""
    seconds = INTERVALS.get(name_or_seconds)
    if seconds is None:
        seconds = int(float(name_or_seconds))
    return IntervalTrigger(seconds=seconds, jitter=min(60, seconds // 10))


def build_scheduler() -> BackgroundScheduler:
    return BackgroundScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone="UTC",
    )
