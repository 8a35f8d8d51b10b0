"""Upload worker processes: untrusted audio is decoded and stored away from the API process.

An upload's worker runs ``ingest.service.sanitize_and_store``: decode, re-encode, the object
write and the row's transaction, so the API process only hands over the checked bytes and
awaits the outcome.

- **Warm, and never started on the hot path.** ``start`` launches the workers and returns once
  each has imported the audio modules, opened the database engine, the store and the key store
  (``core.resources``) and run a first statement; the app answers ``/readyz`` only after that.
- **One upload per worker at a time**, over a pipe of its own that the event loop writes and
  reads without blocking: no executor, no helper threads, no queue shared between workers.
- **A crash fails only its own upload.** A native decoder that crashes ends its worker; the
  upload it was running answers 503 ``decoder_unavailable``, the other workers carry on, and a
  replacement is started. A decode that overruns its limit ends the worker too (its own
  SIGALRM), and past the job's overall limit the pool kills it.
- **Recycled in the background.** After ``max_tasks_per_child`` uploads a worker is due: a
  replacement is started and warmed on a thread, swapped in when ready, and the old worker exits
  once idle, so no worker lives long on untrusted input and no upload waits for a start.
- Workers die with the API process, whatever ends it (``core.lifeline``).

Workers are forked from a forkserver that has the audio and storage modules loaded, so a new
worker costs a fork, not an interpreter start.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np
import soundfile as sf

from core.errors import ChorusError, DecoderUnavailable
from core.lifeline import serve_process
from ingest import containers
from ingest.audio import AudioLimits, sanitize_audio
from ingest.service import SanitizeTask, UploadJob, sanitize_and_store
from ingest.service import warm_up as warm_up_resources
from policies import flac

# How long an upload's store step (object write, row transaction) may take in its worker
# beyond the decode; the store's and the database's own timeouts are shorter.
STORE_ALLOWANCE_S = 40.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
RESTART_PAUSE_MAX_S = 10.0
_HEADER = struct.Struct("!i")  # multiprocessing.Connection's message length prefix

_logger = logging.getLogger("chorus.ingest.decoder")


@dataclass(frozen=True)
class WarmUp:
    """What a new worker opens before it reports ready (URLs: nothing crosses as an object)."""

    database_url: str
    storage_url: str
    key_store_url: str


class _Failed(Exception):
    """An exception of the worker that could not be sent as itself."""


def _warm_audio() -> None:
    """Run the audio path once on a made-up second of noise (lazy libraries load, FFT plans
    and resamplers are made); the speech check refuses it before anything would be stored."""
    rng = np.random.default_rng(0)
    for rate in (8000, 44100):
        buffer = io.BytesIO()
        sf.write(buffer, rng.normal(0.0, 0.01, rate).astype(np.float32), rate, format="WAV")
        limits = AudioLimits(
            min_duration_s=0.1,
            max_duration_s=2.0,
            min_sample_rate=rate,
            max_sample_rate=rate,
            output_sample_rate=16000,
            min_speech_s=0.1,
        )
        with contextlib.suppress(ChorusError):
            sanitize_audio(buffer.getvalue(), limits)
    # FFmpeg's path (what libsndfile cannot read) opens its libraries on first use.
    containers.decode(
        buffer.getvalue(),
        max_channels=1,
        min_sample_rate=8000,
        max_sample_rate=48000,
        max_duration_s=2.0,
    )
    flac.encode_canonical(np.zeros(16000, dtype=np.int16), 16000)


def _warm(warm_up: WarmUp | None) -> None:
    _warm_audio()
    if warm_up is None:
        return
    try:
        warm_up_resources(warm_up.database_url, warm_up.storage_url, warm_up.key_store_url)
    except ChorusError as exc:
        # The database or store is down: the worker starts cold; its first upload opens them
        # (or answers 503 as any upload does while they are down, and /readyz says so).
        _logger.warning("upload worker starts without its resources", extra={"code": exc.code})


def _worker_main(
    conn: Connection, task: SanitizeTask, warm_up: WarmUp | None, api_pid: int
) -> None:
    """A worker's life: warm up, report ready, then one job at a time until told to stop."""
    # Its parent is the single-threaded forkserver: die with it and with the API process.
    serve_process(api_pid, parent_single_threaded=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the API process decides when workers stop
    try:
        _warm(warm_up)
    except Exception as exc:  # reported, not raised: the pool refuses to start
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            sanitize_and_store(job, task)
        except Exception as exc:
            conn.send(("error", _sendable(exc)))
        else:
            conn.send(("ok", None))


def _sendable(exc: Exception) -> Exception:
    """The exception itself when it survives pickling (ChorusErrors do), else a stand-in."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, just made
    except Exception:
        return _Failed(f"{type(exc).__name__}: {exc}")
    return exc


class _Worker:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn  # blocking, for start and stop
        self.tasks = 0
        self.retire = False  # a warm replacement is in; stop this one when it is next idle
        self._socket: socket.socket | None = None

    def socket(self) -> socket.socket:
        """The pipe's API end for the event loop: non-blocking, the same framing as
        ``Connection`` (a 4-byte big-endian length, then a pickle) so the worker reads it."""
        if self._socket is None:
            self._socket = socket.socket(fileno=os.dup(self.conn.fileno()))
            self._socket.setblocking(False)
        return self._socket

    async def exchange(self, job: UploadJob) -> tuple[str, Any]:
        loop = asyncio.get_running_loop()
        sock = self.socket()
        payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        await loop.sock_sendall(sock, _HEADER.pack(len(payload)) + payload)
        (size,) = _HEADER.unpack(await _receive(loop, sock, _HEADER.size))
        answer: tuple[str, Any] = pickle.loads(await _receive(loop, sock, size))  # noqa: S301
        return answer

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            with contextlib.suppress(OSError):
                self.process.kill()
        else:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(None)
        self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()
        self.conn.close()


async def _receive(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes; EOFError when the worker is gone."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = await loop.sock_recv_into(sock, view[received:])
        if count == 0:
            raise EOFError("the upload worker closed its pipe")
        received += count
    return bytes(buffer)


class DecoderPool:
    """Upload workers of one API process; ``sanitize_and_store`` runs a job on an idle one."""

    def __init__(
        self,
        *,
        workers: int,
        timeout_s: float = 20.0,
        # A start (fork, warm-up) costs ~40 ms of CPU: 0.04 ms an upload at 1,000, 0.2 at 200.
        max_tasks_per_child: int = 1000,
        task: SanitizeTask = sanitize_audio,
        warm_up: WarmUp | None = None,
    ) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self.max_tasks_per_child = max_tasks_per_child
        self.task = task
        self.warm_up = warm_up
        self.replacements = 0  # workers replaced after a crash or a timeout
        self.recycled = 0  # workers replaced after max_tasks_per_child uploads
        self._lock = threading.Lock()
        self._idle: deque[_Worker] = deque()
        self._waiters: deque[asyncio.Future[_Worker]] = deque()
        self._all: set[_Worker] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._starting = 0  # replacements being started
        self._start_failing = False  # the last start of a replacement failed
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(
            [
                "ingest.audio",
                "ingest.containers",
                "ingest.service",
                "core.resources",
                "core.db",
                "core.storage",
            ]
        )

    # lifecycle

    def start(self) -> None:
        """Start every worker and wait until each is warm (raises DecoderUnavailable if not)."""
        with _main_module_hidden():
            pending = [self._launch() for _ in range(self.workers)]
            started = [self._await_ready(*launched) for launched in pending]
        with self._lock:
            self._running = True
            for worker in started:
                self._all.add(worker)
                self._idle.append(worker)

    def shutdown(self) -> None:
        with self._lock:
            self._running = False
            workers, self._all = list(self._all), set()
            self._idle.clear()
            waiters, self._waiters = list(self._waiters), deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(
                    _fail, waiter, DecoderUnavailable("the audio decoder is stopping")
                )
        for worker in workers:
            worker.stop()

    def upload_job(self, **fields: Any) -> UploadJob:
        """An ``UploadJob`` with this pool's decode time limit."""
        return UploadJob(decode_timeout_s=self.timeout_s, **fields)

    # the hot path

    async def sanitize_and_store(self, job: UploadJob) -> None:
        """Decode, re-encode and store an upload in a worker; its ChorusErrors pass through.

        Cancelled while its worker runs, the worker is replaced (its job may be cut short, and
        the orphan sweeper takes an object left without a row); the upload route shields this
        call, so a client that goes away does not cut its upload short.
        """
        outcome, detail = await self._run(job)
        if outcome == "error":
            if isinstance(detail, _Failed):
                raise RuntimeError(str(detail))
            raise detail

    async def _run(self, job: UploadJob) -> tuple[str, Any]:
        worker = await self._acquire()
        healthy = False
        try:
            answer = await self._exchange(worker, job, job.decode_timeout_s + STORE_ALLOWANCE_S)
            healthy = True
            return answer
        finally:
            self._release(worker, healthy=healthy)

    async def _exchange(self, worker: _Worker, job: UploadJob, timeout_s: float) -> tuple[str, Any]:
        try:
            async with asyncio.timeout(timeout_s):
                return await worker.exchange(job)
        except TimeoutError:
            _logger.warning("upload worker timed out; replacing it")
            worker.stop(kill=True)
            raise DecoderUnavailable("decoding took too long") from None
        except (EOFError, OSError):
            _logger.warning("upload worker died; replacing it")
            raise DecoderUnavailable("the audio decoder failed; retry later") from None

    async def _acquire(self) -> _Worker:
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._running:
                raise DecoderUnavailable("the audio decoder is not running")
            self._loop = loop
            if not self._all and (self._start_failing or not self._starting):
                raise DecoderUnavailable("no upload worker is running; retry")
            while self._idle:
                worker = self._idle.popleft()
                if worker.retire:
                    self._retire(worker)
                    continue
                return worker
            waiter: asyncio.Future[_Worker] = loop.create_future()
            self._waiters.append(waiter)
        return await waiter

    def _release(self, worker: _Worker, *, healthy: bool) -> None:
        worker.tasks += 1
        with self._lock:
            if not healthy or not worker.alive:
                self._all.discard(worker)
                if self._running:
                    self.replacements += 1
                    self._replace_in_background(dead=worker, due=None)
                else:
                    worker.stop(kill=True)
                return
            if worker.retire:
                self._retire(worker)
                return
            if worker.tasks == self.max_tasks_per_child and self._running:
                self.recycled += 1  # it serves on until its replacement is warm
                self._replace_in_background(dead=None, due=worker)
            self._hand_over(worker)

    def _hand_over(self, worker: _Worker) -> None:
        """Give an idle worker to the longest waiting upload, or keep it (lock held)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter, worker, self)
                return
        self._idle.append(worker)

    def _retire(self, worker: _Worker) -> None:
        """Stop a worker whose replacement is in (lock held; the stop itself is off-thread)."""
        self._all.discard(worker)
        threading.Thread(target=worker.stop, name="chorus-worker-retire", daemon=True).start()

    def _replace_in_background(self, *, dead: _Worker | None, due: _Worker | None) -> None:
        """Start a worker on a thread: for one that ``dead``, or for one ``due`` to recycle
        (which stops once the new one is in). A failed start is retried with a growing pause;
        while no worker at all is left, uploads answer 503 instead of waiting."""

        def build() -> None:
            try:
                worker = start()
            finally:
                with self._lock:
                    self._starting -= 1
            if worker is None:
                return
            with self._lock:
                if not self._running:
                    worker.stop()
                    return
                self._start_failing = False
                self._all.add(worker)
                if due is not None:
                    due.retire = True
                    if due in self._idle:
                        self._idle.remove(due)
                        self._retire(due)
                self._hand_over(worker)

        def start() -> _Worker | None:
            if dead is not None:
                dead.stop(kill=True)
            pause = 0.5
            while True:
                with self._lock:
                    if not self._running:
                        return None
                try:
                    with _main_module_hidden():
                        return self._await_ready(*self._launch())
                except DecoderUnavailable as exc:
                    _logger.error("upload worker could not start", extra={"code": exc.code})
                    with self._lock:
                        self._start_failing = True
                        if not self._all:
                            self._fail_waiters()
                time.sleep(pause)
                pause = min(pause * 2, RESTART_PAUSE_MAX_S)

        self._starting += 1  # lock held by the caller
        threading.Thread(target=build, name="chorus-worker-start", daemon=True).start()

    def _fail_waiters(self) -> None:
        """No worker is left: every waiting upload answers 503 (lock held)."""
        waiters, self._waiters = list(self._waiters), deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(
                    _fail, waiter, DecoderUnavailable("no upload worker is running; retry")
                )

    # starting one worker

    def _launch(self) -> tuple[BaseProcess, Connection]:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child_end, self.task, self.warm_up, os.getpid()),
            name="chorus-upload-worker",
            daemon=True,
        )
        process.start()
        child_end.close()
        return process, parent_end

    def _await_ready(self, process: BaseProcess, conn: Connection) -> _Worker:
        worker = _Worker(process, conn)
        try:
            if not conn.poll(START_TIMEOUT_S):
                raise DecoderUnavailable("an upload worker did not start in time")
            status, detail = conn.recv()
        except (EOFError, OSError):
            worker.stop(kill=True)
            raise DecoderUnavailable("an upload worker died while starting") from None
        except DecoderUnavailable:
            worker.stop(kill=True)
            raise
        if status != "ready":
            worker.stop(kill=True)
            raise DecoderUnavailable(f"an upload worker could not start: {detail}")
        return worker


def _resolve(waiter: asyncio.Future[_Worker], worker: _Worker, pool: DecoderPool) -> None:
    if waiter.done():  # failed by a shutdown meanwhile: the worker goes to the next in line
        with pool._lock:
            pool._hand_over(worker)
        return
    waiter.set_result(worker)


def _fail(waiter: asyncio.Future[_Worker], exc: ChorusError) -> None:
    if not waiter.done():
        waiter.set_exception(exc)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start workers without re-running the program's main script in each of them.

    ``multiprocessing`` makes a new process import the parent's ``__main__`` by path when it
    has no module spec, as a console script (``chorus serve``) does not: each worker would
    re-import the CLI and everything it imports. Workers need nothing from ``__main__``.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    path = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            main.__dict__["__file__"] = path
