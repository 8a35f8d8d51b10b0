"""Helper processes end when the process they serve dies, whatever killed it.

A SIGKILLed API process runs no shutdown code, so its upload workers, its job process and the
``multiprocessing`` helpers would otherwise live on, holding memory, files and connections to
the database and the store. Two mechanisms, both from the child's side (Linux):

- ``PR_SET_PDEATHSIG`` (``prctl``): the kernel sends the child SIGKILL when the *thread* that
  forked it ends. Only safe where that thread is the parent's only one, as in the forkserver
  that forks the upload workers.
- a parent-liveness watch: a daemon thread waits on a pidfd of the process served (or, where
  pidfds are missing, polls it) and ends this process when it is gone. It follows a process,
  not a thread, so it fits children started from a pool's or a scheduler's thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_INTERVAL_S = 1.0


def die_with_parent_thread(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel for ``sig`` when the forking thread of the parent ends; returns whether
    it was armed (False off Linux). Exits at once if the parent is already gone."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = int(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        armed = False
    if armed and os.getppid() != parent:
        os._exit(1)  # the parent died before the request took effect
    return armed


def exit_when_gone(pid: int) -> None:
    """End this process (``os._exit``) as soon as process ``pid`` has ended."""
    if pid == os.getpid():
        raise ValueError("a process cannot watch itself")
    threading.Thread(target=_watch, args=(pid,), name="chorus-lifeline", daemon=True).start()


def _watch(pid: int) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (OSError, AttributeError):
        pidfd = None
    if pidfd is not None:
        # Readable once the process has ended; pid reuse cannot fool a pidfd.
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while not poller.poll():
            pass
        os._exit(1)
    while _alive(pid):
        time.sleep(POLL_INTERVAL_S)
    os._exit(1)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        return True
    return False


def serve_process(pid: int, parent_single_threaded: bool = False) -> None:
    """Initializer of a pool's child processes: die with process ``pid`` (the API process)
    and, where the parent is single-threaded (a forkserver), with the parent too."""
    exit_when_gone(pid)
    if parent_single_threaded:
        die_with_parent_thread()
