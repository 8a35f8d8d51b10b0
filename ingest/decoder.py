"""A pool of worker processes that decodes untrusted audio away from the API process.

A native decoder that crashes takes only its worker down: the broken pool is replaced and the
request answers 503 ``decoder_unavailable``. A decode that overruns its time limit is treated
the same way (its workers are stopped, since a process pool cannot cancel a running task).
Workers start from a forkserver with the audio modules preloaded, and the pool is swapped for a
fresh one after ``workers × max_tasks_per_child`` decodes so no worker lives long on untrusted
input. (The executor's own ``max_tasks_per_child`` is not used: on Python 3.11 a pool whose
worker retires while decodes are queued stops running them.)
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from core.errors import DecoderUnavailable
from ingest.audio import AudioLimits, SanitizedClip, sanitize_audio

SanitizeTask = Callable[[bytes, AudioLimits], SanitizedClip]

_logger = logging.getLogger("chorus.ingest.decoder")


def _warm_up() -> None:
    """Runs once in each new worker so the first real decode does not pay for imports."""


class DecoderPool:
    """Runs ``task`` (the sanitizer) in worker processes; one instance per API process."""

    def __init__(
        self,
        *,
        workers: int,
        timeout_s: float = 20.0,
        max_tasks_per_child: int = 200,
        task: SanitizeTask = sanitize_audio,
    ) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self.max_tasks_per_child = max_tasks_per_child
        self.task = task
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._submitted = 0
        self.replacements = 0

    def start(self) -> None:
        with self._lock:
            if self._executor is None:
                self._executor = self._new_executor()

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    async def sanitize(self, data: bytes, limits: AudioLimits) -> SanitizedClip:
        """Decode in a worker; UnsupportedAudio/InvalidAudio pass through from the worker."""
        executor = self._current()
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(executor, self.task, data, limits)
            return await asyncio.wait_for(future, timeout=self.timeout_s)
        except BrokenProcessPool:
            _logger.warning("decoder worker died; replacing the pool")
            self._replace(executor, kill=False)
            raise DecoderUnavailable("the audio decoder failed; retry later") from None
        except TimeoutError:
            _logger.warning("decoder timed out; replacing the pool")
            self._replace(executor, kill=True)
            raise DecoderUnavailable("decoding took too long") from None
        except RuntimeError as exc:
            # "cannot schedule new futures after shutdown": the pool was swapped meanwhile.
            if "shutdown" not in str(exc):
                raise
            raise DecoderUnavailable("the audio decoder is restarting; retry") from None
        except asyncio.CancelledError:
            # Another request's timeout replaced the pool and cancelled this queued decode;
            # unless this request itself is being cancelled, it answers 503, not a 500.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise DecoderUnavailable("the audio decoder is restarting; retry") from None

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                raise DecoderUnavailable("the audio decoder is not running")
            self._submitted += 1
            if self._submitted > self.workers * self.max_tasks_per_child:
                retired, self._executor = self._executor, self._new_executor()
                self._submitted = 1
                retired.shutdown(wait=False)  # its queued decodes finish, then its workers exit
            return self._executor

    def _replace(self, broken: ProcessPoolExecutor, *, kill: bool) -> None:
        with self._lock:
            if self._executor is not broken:
                return  # another request already replaced it
            self._executor = self._new_executor()
            self.replacements += 1
        if kill:
            for process in list((broken._processes or {}).values()):
                process.kill()
        broken.shutdown(wait=False, cancel_futures=True)

    def _new_executor(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["ingest.audio"])
        executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        for _ in range(self.workers):
            executor.submit(_warm_up)
        return executor
