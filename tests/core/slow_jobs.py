"""Jobs for the scheduler's job process, importable by the fresh interpreter it starts."""

from __future__ import annotations

import os
import time
from pathlib import Path


def note_pid_and_sleep(pid_file: str, seconds: float) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)


def note_niceness(niceness_file: str) -> None:
    Path(niceness_file).write_text(str(os.nice(0)))
