"""A pool of worker processes that decodes untrusted audio away from the API process.

An upload's worker also stores the result (``ingest.service.sanitize_and_store``), so the API
process only hands over the checked bytes and awaits the outcome. A native decoder that crashes
takes only its worker down: the broken pool is replaced and the request answers 503
``decoder_unavailable``. A decode that overruns its time limit is treated the same way: the
worker's own alarm ends it; past the job's overall limit the pool's workers are stopped (a
process pool cannot cancel a running task). If a worker dies, the pool's other in-flight
uploads answer 503 too; one that had already committed its row keeps it (the client may retry,
within the contribution cap), and an object without a row is left to the orphan sweeper.
Workers start from a forkserver with the audio modules preloaded, and the pool is swapped for a
fresh one after ``workers × max_tasks_per_child`` decodes so no worker lives long on untrusted
input. (The executor's own ``max_tasks_per_child`` is not used: on Python 3.11 a pool whose
worker retires while decodes are queued stops running them.)
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from core.errors import DecoderUnavailable
from core.lifeline import serve_process
from ingest.audio import sanitize_audio
from ingest.service import SanitizeTask, UploadJob, sanitize_and_store

T = TypeVar("T")
# How long an upload's store step (object write, row transaction) may take in its worker
# beyond the decode; the store's and the database's own timeouts are shorter.
STORE_ALLOWANCE_S = 40.0

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

    def upload_job(self, **fields: Any) -> UploadJob:
        """An ``UploadJob`` with this pool's decode time limit."""
        return UploadJob(decode_timeout_s=self.timeout_s, **fields)

    async def sanitize_and_store(self, job: UploadJob) -> None:
        """Decode, re-encode and store an upload in a worker; its ChorusErrors pass through."""
        await self._run(
            job.decode_timeout_s + STORE_ALLOWANCE_S, sanitize_and_store, job, self.task
        )

    async def _run(self, timeout_s: float, task: Callable[..., T], *args: Any) -> T:
        executor = self._current()
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(executor, task, *args)
            return await asyncio.wait_for(future, timeout=timeout_s)
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
            current = asyncio.current_task()
            if current is not None and current.cancelling():
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
        context.set_forkserver_preload(["ingest.audio", "ingest.service"])
        # Workers (children of the forkserver) end with the API process, even a SIGKILLed one.
        executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=serve_process,
            initargs=(os.getpid(), True),
        )
        for _ in range(self.workers):
            executor.submit(_warm_up)
        return executor
