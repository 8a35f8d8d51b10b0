"""The job scheduler (APScheduler 3) that runs releases, sweeps and retraining.

Light jobs run on the scheduler's threads. Heavy ones (the release cycle, the review model's
retraining) run on its ``PROCESS_EXECUTOR``: one long-lived worker process, so their work never
competes with the API process's event loop for the interpreter, at a lower CPU priority
(``JOB_NICENESS``), so that a release's burst of audio work yields the cores to uploads, whose
learners are waiting, instead of sharing them.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from apscheduler.executors.pool import ProcessPoolExecutor, ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from core.lifeline import serve_process

INTERVALS = {"hourly": 3600, "daily": 86_400, "weekly": 604_800}
PROCESS_EXECUTOR = "process"
# How long a stopping service lets a running heavy job finish before ending its process (a
# release cycle ended midway is resumed by the next one).
JOB_STOP_GRACE_S = 10.0
# How much nicer than the API process the job process runs (``nice(2)``; 0 to 19).
JOB_NICENESS = 10


def start_job_process(api_pid: int) -> None:
    """Initializer of the job process: it dies with the API process and yields it the CPU."""
    serve_process(api_pid)
    os.nice(JOB_NICENESS)


class JobProcessExecutor(ProcessPoolExecutor):  # type: ignore[misc]
    """APScheduler's process executor (one long-lived process), whose shutdown also ends it.

    Without this a job process outlives a stopped service until its running job is done.
    """

    def __init__(self) -> None:
        # A fresh interpreter (spawn), not a fork of a process that runs threads; it ends
        # with the process that made it, even a SIGKILLed one (core.lifeline).
        super().__init__(
            max_workers=1,
            pool_kwargs={
                "mp_context": multiprocessing.get_context("spawn"),
                "initializer": start_job_process,
                "initargs": (os.getpid(),),
            },
        )

    def shutdown(self, wait: bool = True) -> None:
        pool = self._pool
        processes = list((pool._processes or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + JOB_STOP_GRACE_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(5)


def interval_trigger(name_or_seconds: str) -> IntervalTrigger:
    """``hourly``/``daily``/``weekly`` or a number of seconds (for tests and demos)."""
    seconds = INTERVALS.get(name_or_seconds)
    if seconds is None:
        seconds = int(float(name_or_seconds))
    return IntervalTrigger(seconds=seconds, jitter=min(60, seconds // 10))


def build_scheduler() -> BackgroundScheduler:
    return BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(10), PROCESS_EXECUTOR: JobProcessExecutor()},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone="UTC",
    )
