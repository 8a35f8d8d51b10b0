"""The job scheduler (APScheduler 3) that runs releases, sweeps and retraining.

Light jobs run on the scheduler's threads. Heavy ones (the release cycle) run on its
``PROCESS_EXECUTOR``: one long-lived worker process, so their work never competes with the API
process's event loop for the interpreter.
"""

from __future__ import annotations

import multiprocessing

from apscheduler.executors.pool import ProcessPoolExecutor, ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

INTERVALS = {"hourly": 3600, "daily": 86_400, "weekly": 604_800}
PROCESS_EXECUTOR = "process"


def interval_trigger(name_or_seconds: str) -> IntervalTrigger:
    """``hourly``/``daily``/``weekly`` or a number of seconds (for tests and demos)."""
    seconds = INTERVALS.get(name_or_seconds)
    if seconds is None:
        seconds = int(float(name_or_seconds))
    return IntervalTrigger(seconds=seconds, jitter=min(60, seconds // 10))


def build_scheduler() -> BackgroundScheduler:
    # A fresh interpreter (spawn), not a fork of a process that runs threads; it starts on the
    # first heavy job and stays for the next ones.
    processes = ProcessPoolExecutor(
        max_workers=1, pool_kwargs={"mp_context": multiprocessing.get_context("spawn")}
    )
    return BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(10), PROCESS_EXECUTOR: processes},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone="UTC",
    )
