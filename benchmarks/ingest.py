"""Upload throughput: ``chorus serve`` against a bare endpoint and the transcode limit.

Three servers run in subprocesses on loopback and write to the same kind of store (a file store
under a temporary folder):

- **bare**: FastAPI's multipart parsing, then the upload's bytes written to the store as-is
  (one uvicorn worker);
- **transcode**: the same, plus the audio work P6/P7 require done in-process on its thread
  pool (``ingest.audio.sanitize_audio``: decode, mixdown, resample, speech check, canonical
  FLAC), the FLAC written instead (one uvicorn worker): the physical limit of the pipeline's
  work without consent, eligibility, bucket rows or crash containment;
- **full**: the service as users run it, the ``chorus`` console script (``chorus serve``) on the
  embedded default.

The same async httpx load generator drives each at a fixed concurrency, with 4-second clips made
of real FSDD recordings. Rounds alternate between the servers to spread out machine noise;
warm-up uploads are not counted. Besides throughput and latency it reports the CPU time each
server (its process and every descendant, such as upload workers) and the load generator spent
per upload, read from /proc.

    .venv/bin/python benchmarks/ingest.py [--requests 300] [--concurrency 8] [--rounds 2]

``--format m4a|webm|3gp|…`` sends the clips encoded as a phone or browser records them (the
encoders of ``tests.ingest.phone_formats``), to all three servers alike: the transcode server
then measures that format's own limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

import httpx
import numpy as np
import soundfile as sf
from fastapi import FastAPI, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("bare", "transcode", "full")
# A bucket takes a recording once (P6: k distinct recordings), so the load never sends one
# twice to an exercise: upload number n goes to exercise n // UPLOADS_PER_EXERCISE with clip
# n % CLIP_COUNT, and CLIP_COUNT > UPLOADS_PER_EXERCISE. The scheduler is off, so buckets grow
# past k without being released; a bucket is opened once every 40 uploads.
UPLOADS_PER_EXERCISE = 40
CLIP_COUNT = 41


def exercise_for(serial: int) -> str:
    return f"bench-{serial // UPLOADS_PER_EXERCISE:06d}"


# --- the bare endpoint (run by uvicorn in its own process) ---------------------------------


def create_bare_app() -> FastAPI:
    """FastAPI's own multipart parsing, then the file's bytes written to the store as-is."""
    from core.storage import open_store

    store = open_store(os.environ["CHORUS_STORAGE_URL"])
    app = FastAPI()

    @app.post("/v1/clips", status_code=201)
    async def upload(
        audio: Annotated[UploadFile, File()], metadata: Annotated[str, Form()]
    ) -> dict[str, str]:
        data = await audio.read()
        await run_in_threadpool(store.put, f"pending/{secrets.token_hex(16)}.wav", data)
        return {"status": "accepted"}

    return app


def create_transcode_app() -> FastAPI:
    """The bare endpoint plus the service's own audio work, in-process."""
    from core.storage import open_store
    from ingest.audio import AudioLimits, sanitize_audio

    store = open_store(os.environ["CHORUS_STORAGE_URL"])
    limits = AudioLimits(
        min_duration_s=0.3,
        max_duration_s=30.0,
        min_sample_rate=8000,
        max_sample_rate=48000,
        output_sample_rate=16000,
        min_speech_s=0.2,
    )
    app = FastAPI()

    def transcode_and_store(data: bytes) -> None:
        clip = sanitize_audio(data, limits)
        store.put(f"pending/{secrets.token_hex(16)}.flac", clip.flac)

    @app.post("/v1/clips", status_code=201)
    async def upload(
        audio: Annotated[UploadFile, File()], metadata: Annotated[str, Form()]
    ) -> dict[str, str]:
        data = await audio.read()
        await run_in_threadpool(transcode_and_store, data)
        return {"status": "accepted"}

    return app


# --- fixtures: clips, keys, database --------------------------------------------------------


def four_second_clips(count: int) -> list[bytes]:
    """WAV clips of 4 s, each a run of one speaker's real recordings."""
    from benchmarks.service_env import fsdd_recordings

    files = sorted(fsdd_recordings().glob("*.wav"))
    clips: list[bytes] = []
    cursor = 0
    for _ in range(count):
        pieces: list[np.ndarray] = []
        total = 0
        while total < 4 * 8000:
            samples, rate = sf.read(files[cursor % len(files)], dtype="float32")
            assert rate == 8000
            pieces.append(samples)
            total += len(samples)
            cursor += 1
        buffer = io.BytesIO()
        sf.write(buffer, np.concatenate(pieces)[: 4 * 8000], 8000, format="WAV", subtype="PCM_16")
        clips.append(buffer.getvalue())
    return clips


@dataclass(frozen=True)
class ClipFormat:
    name: str
    media_type: str

    @property
    def filename(self) -> str:
        return f"clip.{self.name}"


def encoded_clips(wav_clips: list[bytes], name: str) -> tuple[list[bytes], ClipFormat]:
    """The clips as format ``name`` records them (WAV: as they are)."""
    from tests.ingest.phone_formats import PHONE_FORMATS, encode

    spec = PHONE_FORMATS[name]
    clips = wav_clips if name == "wav" else [encode(clip, name) for clip in wav_clips]
    return clips, ClipFormat(name, spec.media_type)


WAV = ClipFormat("wav", "audio/wav")


def prepare_full_service(
    workdir: Path, exercises: list[str], **overrides: str
) -> tuple[dict[str, str], str]:
    """Environment for the full app, with a usage catalog; returns (env, private key PEM)."""
    from benchmarks.service_env import embedded_service

    settings = {
        "CHORUS_SCHEDULER_ENABLED": "false",
        "CHORUS_LOG_LEVEL": "WARNING",
        **{k: v for k, v in os.environ.items() if k == "CHORUS_DECODER_WORKERS"},
        **overrides,
    }
    return embedded_service(workdir, exercises=exercises, **settings)


# --- servers and load -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(target: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A reference app (``module:factory``) as one uvicorn worker."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with _running(command, env, ready_path="/docs") as server:
        yield server


@contextmanager
def serve_chorus(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``chorus serve``: the console script installed beside this interpreter, as users run it."""
    script = Path(sys.executable).with_name("chorus")
    command = [str(script), "serve", "--host", "127.0.0.1", "--port", "{port}"]
    with _running(command, env, ready_path="/readyz") as server:
        yield server


@contextmanager
def _running(
    command: list[str], env: dict[str, str], *, ready_path: str
) -> Iterator[tuple[str, int]]:
    port = _free_port()
    process = subprocess.Popen(
        [part.replace("{port}", str(port)) for part in command],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}{ready_path}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{command[:3]} did not start")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def own_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` itself, without its children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and all its descendants, reaped ones included (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        found = stats.get(current)
        if found is not None:
            # utime, stime, cutime, cstime (fields 14-17 of stat; index 11-14 after the name)
            total += sum(int(value) for value in found[11:15])
        todo.extend(children.get(current, []))
    return total / tick


@dataclass(frozen=True)
class RunResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int
    server_cpu_s: float = 0.0
    api_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def measure(server: tuple[str, int], load: Load) -> RunResult:
    """One round of ``load`` against ``server`` with the CPU time of both sides (the load
    generator's own is measured by ``load``, around the sending alone)."""
    url, pid = server
    prepared = load.prepare()
    server_before, api_before = tree_cpu_seconds(pid), own_cpu_seconds(pid)
    result = load.run(url, prepared)
    return dataclasses.replace(
        result,
        server_cpu_s=tree_cpu_seconds(pid) - server_before,
        api_cpu_s=own_cpu_seconds(pid) - api_before,
    )


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Load(Protocol):
    def prepare(self) -> list[str]:
        """The round's consent tokens (minted before the measured part)."""

    def run(self, url: str, tokens: list[str]) -> RunResult: ...


@dataclass(frozen=True)
class HttpxLoad:
    clips: list[bytes]
    mint: Callable[[int], list[str]]
    requests: int
    concurrency: int
    clip_format: ClipFormat = WAV

    def prepare(self) -> list[str]:
        return self.mint(self.requests)

    def run(self, url: str, tokens: list[str]) -> RunResult:
        before = time.process_time()
        result = asyncio.run(drive(url, self.clips, tokens, self.concurrency, self.clip_format))
        return dataclasses.replace(result, client_cpu_s=time.process_time() - before)


# wrk: a load generator in C, driven by a Lua script that sends each prepared body with a
# consent token of its own (a fresh learner per upload) and prints a JSON summary.
WRK_SCRIPT = r"""
local clips, serials, tokens, index = {}, {}, {}, 0
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
end
function init(args)
  local folder, count = args[1], tonumber(args[2])
  for i = 0, count - 1 do
    local file = io.open(folder .. "/clip-" .. i .. ".bin", "rb")
    clips[i] = file:read("*a")
    file:close()
  end
  for line in io.lines(folder .. "/tokens-" .. id .. ".txt") do
    local serial, token = line:match("^(%d+) (.+)$")
    serials[#serials + 1] = tonumber(serial)
    tokens[#tokens + 1] = token
  end
  clip_count = count
  boundary = args[3]
  per_exercise = tonumber(args[4])
  filename, media_type = args[5], args[6]
end
function request()
  index = index + 1
  local serial = serials[index]
  local headers = {}
  headers["Authorization"] = "Bearer " .. tokens[index]
  headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  local body = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="metadata"\r\n\r\n'
    .. string.format('{"exercise_id": "bench-%06d"}', math.floor(serial / per_exercise))
    .. "\r\n--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="audio"; filename="' .. filename .. '"\r\n'
    .. "Content-Type: " .. media_type .. "\r\n\r\n"
    .. clips[serial % clip_count]
    .. "\r\n--" .. boundary .. "--\r\n"
  return wrk.format("POST", "/v1/clips", headers, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
BOUNDARY = "chorus-bench-boundary"
WRK_THREADS = 2
MAX_RATE = 1500  # uploads per second a round could reach at most: tokens are made for it


@dataclass(frozen=True)
class WrkLoad:
    """Rounds of ``seconds`` of wrk at ``concurrency`` connections, fresh tokens each round."""

    folder: Path
    clips: list[bytes]
    mint: Callable[[int], list[str]]
    seconds: float
    concurrency: int
    clip_format: ClipFormat = WAV

    def __post_init__(self) -> None:
        self.folder.mkdir(exist_ok=True)
        for index, clip in enumerate(self.clips):
            (self.folder / f"clip-{index}.bin").write_bytes(clip)
        (self.folder / "script.lua").write_text(WRK_SCRIPT)

    def prepare(self) -> list[str]:
        return self.mint(WRK_THREADS * (int(MAX_RATE * self.seconds / WRK_THREADS) + 100))

    def run(self, url: str, tokens: list[str]) -> RunResult:
        share = len(tokens) // WRK_THREADS
        for thread in range(WRK_THREADS):
            mine = tokens[thread * share : (thread + 1) * share]
            (self.folder / f"tokens-{thread + 1}.txt").write_text("\n".join(mine) + "\n")
        before = _children_cpu_seconds()
        output = subprocess.run(
            [
                "wrk",
                "-t",
                str(WRK_THREADS),
                "-c",
                str(self.concurrency),
                "-d",
                f"{round(self.seconds)}s",
                "--timeout",
                "30s",
                "-s",
                str(self.folder / "script.lua"),
                url,
                "--",
                str(self.folder),
                str(len(self.clips)),
                BOUNDARY,
                str(UPLOADS_PER_EXERCISE),
                self.clip_format.filename,
                self.clip_format.media_type,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        summary = json.loads(output.strip().splitlines()[-1])
        return RunResult(
            requests=summary["requests"],
            seconds=summary["duration_us"] / 1e6,
            p50_ms=summary["p50_us"] / 1000,
            p99_ms=summary["p99_us"] / 1000,
            failures=summary["non2xx"] + summary["socket_errors"],
            client_cpu_s=_children_cpu_seconds() - before,
        )


async def drive(
    url: str,
    clips: list[bytes],
    tokens: list[str],
    concurrency: int,
    clip_format: ClipFormat = WAV,
) -> RunResult:
    """``concurrency`` uploaders, each with a client of its own.

    One shared httpx client with a large pool costs more CPU per request the more connections
    it holds (at 64 connections ~5× as much as at 8), which would measure the load generator.
    """
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(tokens)):
        queue.put_nowait(index)

    async def worker() -> None:
        nonlocal failures
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while True:
                try:
                    index = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                serial_text, token = tokens[index].split(" ", 1)
                serial = int(serial_text)
                metadata = json.dumps({"exercise_id": exercise_for(serial)})
                started = time.perf_counter()
                response = await client.post(
                    "/v1/clips",
                    files=[
                        ("metadata", (None, metadata.encode(), "application/json")),
                        (
                            "audio",
                            (
                                clip_format.filename,
                                clips[serial % len(clips)],
                                clip_format.media_type,
                            ),
                        ),
                    ],
                    headers={"Authorization": f"Bearer {token}"},
                )
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 201:
                    failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    p50, p99 = np.percentile(latencies, [50, 99])
    return RunResult(len(tokens), elapsed, float(p50), float(p99), failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--load",
        choices=("wrk", "httpx"),
        default="wrk" if shutil.which("wrk") else "httpx",
        help="load generator: wrk (Debian's, the default when installed) or Python httpx",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a wrk round")
    parser.add_argument(
        "--format",
        default="wav",
        choices=(
            "wav",
            "m4a",
            "mp4",
            "aac",
            "3gp",
            "amr",
            "webm",
            "ogg-opus",
            "webm-vorbis",
            "ogg-vorbis",
            "mp3",
            "caf",
            "caf-aac",
            "flac",
        ),
        help="how the clips are encoded, as the phone or browser would record them",
    )
    parser.add_argument("--requests", type=int, default=300, help="uploads per httpx round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the service's database: the embedded default, or PostgreSQL (the local server, "
        "else an embedded one)",
    )
    parser.add_argument(
        "--store",
        choices=("file", "s3"),
        default="file",
        help="every server's store: files, or SeaweedFS's S3 gateway started for the run",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from core.storage import open_store
    from ingest.consent import load_private_key, mint_token

    clips, clip_format = encoded_clips(four_second_clips(CLIP_COUNT), args.format)
    results: dict[str, list[RunResult]] = {name: [] for name in SERVERS}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="chorus-bench-"))
        full_dir, bare_dir, transcode_dir = Path(tmp, "full"), Path(tmp, "bare"), Path(tmp, "tx")
        for folder in (full_dir, bare_dir, transcode_dir):
            folder.mkdir()
        storage = {name: f"file://{Path(tmp, name, 'blobs')}" for name in ("full", "bare", "tx")}
        if args.store == "s3":
            from chorus.devservers import SeaweedServer

            seaweed = stack.enter_context(SeaweedServer(Path(tmp, "seaweed")))
            storage = {name: seaweed.storage_url(f"bench-{name}") for name in storage}
        overrides = {"CHORUS_STORAGE_URL": storage["full"]}
        if args.database == "postgres":
            from chorus.devservers_postgres import provision_postgres_database

            url = stack.enter_context(provision_postgres_database(prefix="chorus_bench"))
            overrides["CHORUS_DATABASE_URL"] = url
        # Every upload of the run may go to the full service: its catalog admits them all.
        wrk_run = int(WRK_THREADS * (MAX_RATE * args.seconds / WRK_THREADS + 100))
        per_run = args.requests if args.load == "httpx" else wrk_run
        uploads = len(SERVERS) * (args.warmup + args.rounds * per_run)
        exercises = [exercise_for(n) for n in range(0, uploads + 1, UPLOADS_PER_EXERCISE)]
        full_env, private_pem = prepare_full_service(full_dir, exercises, **overrides)
        bare_env = {"CHORUS_STORAGE_URL": storage["bare"]}
        transcode_env = {"CHORUS_STORAGE_URL": storage["tx"]}
        key = load_private_key(private_pem)
        learner = iter(range(10**9))

        def tokens(count: int) -> list[str]:
            # One learner per upload ("SERIAL TOKEN"): the contribution cap must not refuse
            # the load, and the serial picks the upload's exercise and clip.
            serials = [next(learner) for _ in range(count)]
            return [f"{n} {mint_token(key, learner_id=f'bench-{n}')}" for n in serials]

        with (
            serve("benchmarks.ingest:create_bare_app", bare_env) as bare,
            serve("benchmarks.ingest:create_transcode_app", transcode_env) as transcode,
            serve_chorus(full_env) as full,
        ):
            servers = {"bare": bare, "transcode": transcode, "full": full}
            for url, _pid in servers.values():
                asyncio.run(drive(url, clips, tokens(args.warmup), args.concurrency, clip_format))
            load: Load
            if args.load == "wrk":
                load = WrkLoad(
                    Path(tmp, "wrk"), clips, tokens, args.seconds, args.concurrency, clip_format
                )
            else:
                load = HttpxLoad(clips, tokens, args.requests, args.concurrency, clip_format)

            for _ in range(args.rounds):
                for name, server in servers.items():
                    results[name].append(measure(server, load))
        stored = len(list(open_store(storage["full"]).list("pending/")))

    report(results, args, clip_bytes=len(clips[0]), stored=stored)


def report(
    results: dict[str, list[RunResult]], args: argparse.Namespace, *, clip_bytes: int, stored: int
) -> None:
    summary: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        uploads = sum(run.requests for run in runs)
        summary[name] = {
            "throughput_rps": statistics.median(run.throughput for run in runs),
            "p50_ms": statistics.median(run.p50_ms for run in runs),
            "p99_ms": statistics.median(run.p99_ms for run in runs),
            "failures": float(sum(run.failures for run in runs)),
            "server_cpu_ms": 1000 * sum(run.server_cpu_s for run in runs) / uploads,
            "api_cpu_ms": 1000 * sum(run.api_cpu_s for run in runs) / uploads,
            "client_cpu_ms": 1000 * sum(run.client_cpu_s for run in runs) / uploads,
        }
    size = f"{args.seconds:g} s" if args.load == "wrk" else f"{args.requests} uploads"
    print(
        f"database {args.database}, store {args.store}, "
        f"load {args.load}: {args.rounds} rounds x {size}, concurrency {args.concurrency}, "
        f"4 s clips ({clip_bytes} B {args.format}), cpus {os.cpu_count()}, "
        f"full pipeline stored {stored}"
    )
    print(
        "| endpoint | throughput (req/s) | p50 (ms) | p99 (ms) | failures "
        "| server CPU (ms/upload) | of which API process | load generator CPU (ms/upload) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in SERVERS:
        row = summary[name]
        print(
            f"| {name} | {row['throughput_rps']:.1f} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {int(row['failures'])} | {row['server_cpu_ms']:.2f} | "
            f"{row['api_cpu_ms']:.2f} | {row['client_cpu_ms']:.2f} |"
        )
    for name, runs in results.items():
        rounds = ", ".join(f"{run.throughput:.1f}" for run in runs)
        print(f"{name} rounds (req/s): {rounds}")
    for reference in ("transcode", "bare"):
        ratio = summary["full"]["throughput_rps"] / summary[reference]["throughput_rps"]
        p99 = summary["full"]["p99_ms"] / summary[reference]["p99_ms"]
        # The rounds of one cycle run back to back: the ratio within a cycle is the least
        # exposed to a machine whose speed drifts between rounds.
        cycles = zip(results[reference], results["full"], strict=True)
        paired = [full.throughput / ref.throughput for ref, full in cycles]
        print(
            f"full / {reference}: throughput {ratio:.1%} (within each cycle: median "
            f"{statistics.median(paired):.1%}, range {min(paired):.1%}-{max(paired):.1%}), "
            f"p99 {p99:.2f}x"
        )
    api_ratio = summary["bare"]["api_cpu_ms"] / summary["full"]["api_cpu_ms"]
    print(f"bare / full API-process CPU per upload: {api_ratio:.1%}")
    print(bound_note(summary))


def bound_note(summary: dict[str, dict[str, float]]) -> str:
    """Each endpoint's CPU ceiling and how near its run came to it.

    Every process of a run shares ``os.cpu_count()`` cores, so an endpoint cannot go faster than
    cores / (server + load generator CPU per upload), nor than one core over its API process's
    CPU per upload (one event loop, one interpreter). A run near its ceiling is CPU-bound; one
    well below it waits on something else (fsync, hand-offs).
    """
    cores = os.cpu_count() or 1
    parts = []
    for name, row in summary.items():
        total_ms = row["server_cpu_ms"] + row["client_cpu_ms"]
        ceiling = min(1000 * cores / total_ms, 1000 / row["api_cpu_ms"])
        parts.append(
            f"{name} {ceiling:.0f} req/s (run at {row['throughput_rps'] / ceiling:.0%} of it)"
        )
    return f"CPU ceilings on {cores} cores: " + ", ".join(parts)


if __name__ == "__main__":
    main()
