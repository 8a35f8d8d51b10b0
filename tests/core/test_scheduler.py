"""Heavy jobs run in the scheduler's job process, which a stopping service does not leave behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import core.scheduler
from core.scheduler import PROCESS_EXECUTOR, build_scheduler
from tests.core.slow_jobs import note_niceness, note_pid_and_sleep


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_shutdown_ends_a_running_job_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.scheduler, "JOB_STOP_GRACE_S", 0.5)
    pid_file = tmp_path / "job.pid"
    scheduler = build_scheduler()
    scheduler.add_job(note_pid_and_sleep, args=(str(pid_file), 120), executor=PROCESS_EXECUTOR)
    scheduler.start()
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    job_pid = int(pid_file.read_text())
    assert job_pid != os.getpid()  # not on the API process's threads
    started = time.monotonic()
    scheduler.shutdown(wait=False)
    assert time.monotonic() - started < 10
    assert not _alive(job_pid)


def test_the_job_process_runs_nicer_than_the_api_process(tmp_path: Path) -> None:
    """A release cycle's audio work yields the cores to uploads (core.scheduler.JOB_NICENESS)."""
    niceness_file = tmp_path / "job.nice"
    scheduler = build_scheduler()
    scheduler.add_job(note_niceness, args=(str(niceness_file),), executor=PROCESS_EXECUTOR)
    scheduler.start()
    try:
        deadline = time.monotonic() + 60
        while not niceness_file.exists() or not niceness_file.read_text():
            assert time.monotonic() < deadline, "the job never ran"
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=False)
    expected = min(os.nice(0) + core.scheduler.JOB_NICENESS, 19)
    assert int(niceness_file.read_text()) == expected
