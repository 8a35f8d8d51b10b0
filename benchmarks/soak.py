"""Soak: a bounded loopback upload load at ~80 % of measured capacity, watched over time.

One ``chorus serve`` on the embedded default (SQLite + file store under a temporary folder,
demo policy, a release cycle every ``--release-interval`` seconds) takes real FSDD recordings,
each from a distinct learner. First a closed-loop burst, long enough to span release cycles,
measures capacity (uploads/s at a fixed concurrency); then an open-loop load sends uploads at
``--load`` × that rate on a fixed schedule, whether or not earlier ones have been answered, for
``--duration`` seconds. Latency counts from each upload's scheduled time, so a server falling
behind shows up as latency, not as a slower load; an upload due while ``--max-in-flight`` are
unanswered is shed and counted as an error.

Reported per ``--window``: uploads, errors (anything but 201: refusals, transport errors and
shed uploads), p50 and p99 latency, and the server's resident memory (VmRSS from /proc: the API
process, and the API process with its decoder workers) at the window's end.

    .venv/bin/python benchmarks/soak.py [--duration 600] [--window 30] [--out soak.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.service_env import embedded_service, fsdd_recordings  # noqa: E402

# A bucket takes a recording once (P6: k distinct recordings): upload n goes to exercise
# (n // UPLOADS_PER_EXERCISE) mod EXERCISE_COUNT, so an exercise gets k = 5 uploads in a row,
# reaches k and is released by the next cycle; the clips cycle through the speakers, so any
# UPLOADS_PER_EXERCISE consecutive ones are different people's recordings. An exercise comes
# round again only after EXERCISE_COUNT × 5 uploads, long after its bucket was released.
UPLOADS_PER_EXERCISE = 5
EXERCISE_COUNT = 20_000
EXERCISES = [f"soak-{n:05d}" for n in range(EXERCISE_COUNT)]
from ingest.consent import load_private_key, mint_token  # noqa: E402
from tests.e2e.procs import ChorusProcess, descendants, rss_kib  # noqa: E402


@dataclass
class Sample:
    offset_s: float  # scheduled send time, from the start of the phase
    latency_ms: float
    ok: bool
    shed: bool = False  # not sent: ``max_in_flight`` uploads were still unanswered
    outcome: str = "201"  # the status code, or the problem code of a refusal, or transport/shed


@dataclass
class Window:
    index: int
    uploads: int
    errors: int  # answers other than 201, transport errors and shed uploads
    shed: int
    p50_ms: float
    p99_ms: float
    rss_kib: int
    rss_total_kib: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.uploads if self.uploads else 0.0


@dataclass
class SoakResult:
    capacity_rps: float
    target_rps: float
    duration_s: float
    window_s: float
    windows: list[Window] = field(default_factory=list)
    rss_start_kib: int = 0
    rss_warm_kib: int = 0
    rss_end_kib: int = 0
    rss_total_start_kib: int = 0
    rss_total_end_kib: int = 0
    releases: int = 0
    failed_release_cycles: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def uploads(self) -> int:
        return sum(w.uploads for w in self.windows)

    @property
    def errors(self) -> int:
        return sum(w.errors for w in self.windows)

    @property
    def shed(self) -> int:
        return sum(w.shed for w in self.windows)

    @property
    def error_rate(self) -> float:
        return self.errors / self.uploads if self.uploads else 0.0

    @property
    def achieved_rps(self) -> float:
        return self.uploads / self.duration_s


def rss_total_kib(pid: int) -> int:
    """VmRSS of ``pid`` and every process below it (shared pages counted in each)."""
    total = 0
    for member in (pid, *descendants(pid)):
        try:
            total += rss_kib(member)
        except (OSError, ValueError):
            continue  # a decoder worker being replaced
    return total


def load_clips(fsdd: Path, count: int = 60) -> list[bytes]:
    """FSDD recordings ordered take by take, digit by digit, speaker by speaker: consecutive
    clips are different speakers' (FSDD names are ``digit_speaker_take.wav``)."""

    def order(path: Path) -> tuple[int, int, str]:
        digit, speaker, take = path.stem.split("_")
        return int(take), int(digit), speaker

    files = sorted(
        (path for path in fsdd.glob("*.wav") if path.stat().st_size > 8000), key=order
    )
    speakers = len({path.stem.split("_")[1] for path in files})
    clips = [path.read_bytes() for path in files[: count - count % max(speakers, 1)]]
    if len(clips) < 10 or speakers < UPLOADS_PER_EXERCISE:
        raise SystemExit(f"too few FSDD recordings or speakers in {fsdd}")
    return clips


def prepare_service(workdir: Path, *, release_interval: int) -> tuple[dict[str, str], str]:
    """Environment of the embedded default with a usage catalog; returns (env, private PEM)."""
    return embedded_service(
        workdir,
        exercises=EXERCISES,
        CHORUS_SCHEDULER_ENABLED="true",
        CHORUS_RELEASE_INTERVAL=str(release_interval),
    )


class Uploader:
    """Uploads clips, each as a new learner, and keeps what happened.

    Each upload borrows a client of its own from ``clients`` (one connection each): one shared
    httpx client with a large pool costs several times more CPU per request as its pool grows,
    and on a shared machine a load generator that slows down as a backlog forms would make
    the backlog itself.
    """

    def __init__(
        self, clients: list[httpx.AsyncClient], clips: list[bytes], private_pem: str
    ) -> None:
        self.free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for client in clients:
            self.free.put_nowait(client)
        self.clips = clips
        self.key = load_private_key(private_pem)
        self.serial = 0

    def _request(self) -> tuple[str, bytes, str]:
        self.serial += 1
        token = mint_token(self.key, learner_id=f"soak-{self.serial}")
        exercise = EXERCISES[(self.serial // UPLOADS_PER_EXERCISE) % EXERCISE_COUNT]
        metadata = json.dumps({"exercise_id": exercise})
        return token, self.clips[self.serial % len(self.clips)], metadata

    async def upload(self, scheduled: float) -> Sample:
        token, clip, metadata = self._request()
        client = await self.free.get()
        try:
            response = await client.post(
                "/v1/clips",
                files=[
                    ("metadata", (None, metadata.encode(), "application/json")),
                    ("audio", ("clip.wav", clip, "audio/wav")),
                ],
                headers={"Authorization": f"Bearer {token}"},
            )
            outcome = str(response.status_code)
            if response.status_code != 201:
                with contextlib.suppress(ValueError):
                    outcome += f" {response.json().get('code', '')}"
        except httpx.TransportError as exc:
            outcome = f"transport ({type(exc).__name__})"
        finally:
            self.free.put_nowait(client)
        latency_ms = (time.perf_counter() - scheduled) * 1000
        return Sample(0.0, latency_ms, outcome == "201", outcome=outcome)


async def measure_capacity(uploader: Uploader, *, seconds: float, concurrency: int) -> float:
    """Closed loop: ``concurrency`` uploads always in flight; returns answered uploads/s."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            sample = await uploader.upload(time.perf_counter())
            if not sample.ok:
                raise RuntimeError("an upload failed while measuring capacity")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def open_loop(
    uploader: Uploader, *, rate: float, duration_s: float, window_s: float, server_pid: int,
    max_in_flight: int,
) -> tuple[list[Sample], list[tuple[int, int]]]:
    """Send at ``rate``/s on a fixed schedule; sample RSS at the end of each window.

    An upload due while ``max_in_flight`` are unanswered is not sent and counts as an error
    (shed): a backlog without bound would measure the load generator, not the server.
    """
    samples: list[Sample] = []
    rss: list[tuple[int, int]] = []
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()

    async def one(offset: float) -> None:
        sample = await uploader.upload(start + offset)
        sample.offset_s = offset
        samples.append(sample)

    async def watch_memory() -> None:
        for index in range(1, int(np.ceil(duration_s / window_s)) + 1):
            await asyncio.sleep(max(0.0, start + min(index * window_s, duration_s)
                                    - time.perf_counter()))
            rss.append((rss_kib(server_pid), rss_total_kib(server_pid)))
            failed = sum(not sample.ok for sample in samples)
            print(f"[{time.perf_counter() - start:5.0f} s] answered {len(samples)}, "
                  f"failed {failed}, in flight {len(tasks)}, RSS {rss[-1][0] // 1024} MiB",
                  file=sys.stderr, flush=True)

    watcher = asyncio.create_task(watch_memory())
    count = int(duration_s * rate)
    for index in range(count):
        offset = index / rate
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_in_flight:
            samples.append(Sample(offset, 0.0, ok=False, shed=True, outcome="shed"))
            continue
        task = asyncio.create_task(one(offset))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    await watcher
    return samples, rss


def summarize(
    samples: list[Sample], rss: list[tuple[int, int]], *, window_s: float
) -> list[Window]:
    windows = []
    for index, (rss_main, rss_all) in enumerate(rss):
        inside = [s for s in samples if index * window_s <= s.offset_s < (index + 1) * window_s]
        latencies = [s.latency_ms for s in inside if not s.shed] or [0.0]
        windows.append(Window(
            index=index,
            uploads=len(inside),
            errors=sum(not s.ok for s in inside),
            shed=sum(s.shed for s in inside),
            p50_ms=float(np.percentile(latencies, 50)),
            p99_ms=float(np.percentile(latencies, 99)),
            rss_kib=rss_main,
            rss_total_kib=rss_all,
        ))
    return windows


def count_releases(env: dict[str, str]) -> int:
    import sqlalchemy as sa

    from aggregate.tables import Release
    from core.db import Database

    database = Database(env["CHORUS_DATABASE_URL"])
    try:
        with database.session() as session:
            return session.execute(sa.select(sa.func.count()).select_from(Release)).scalar_one()
    finally:
        database.dispose()


async def _drive(server: ChorusProcess, clips: list[bytes], private_pem: str,
                 args: argparse.Namespace, result: SoakResult) -> None:
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=server.url, timeout=60))
            for _ in range(args.max_in_flight)
        ]
        uploader = Uploader(clients, clips, private_pem)
        result.capacity_rps = await measure_capacity(
            uploader, seconds=args.capacity_seconds, concurrency=args.concurrency
        )
        result.target_rps = result.capacity_rps * args.load
        result.rss_warm_kib = rss_kib(server.pid)
        samples, rss = await open_loop(
            uploader, rate=result.target_rps, duration_s=args.duration,
            window_s=args.window, server_pid=server.pid, max_in_flight=args.max_in_flight,
        )
    result.windows = summarize(samples, rss, window_s=args.window)
    result.outcomes = dict(Counter(sample.outcome for sample in samples).most_common())


def run_soak(args: argparse.Namespace) -> SoakResult:
    result = SoakResult(0.0, 0.0, args.duration, args.window)
    clips = load_clips(args.fsdd)
    with tempfile.TemporaryDirectory(prefix="chorus-soak-") as tmp:
        workdir = Path(tmp)
        env, private_pem = prepare_service(workdir, release_interval=args.release_interval)
        with ChorusProcess(env, workdir / "serve.log") as server:
            signal.signal(signal.SIGTERM, _stopping(server))
            result.rss_start_kib = rss_kib(server.pid)
            result.rss_total_start_kib = rss_total_kib(server.pid)
            asyncio.run(_drive(server, clips, private_pem, args, result))
            result.rss_end_kib = rss_kib(server.pid)
            result.rss_total_end_kib = rss_total_kib(server.pid)
            if not server.running:
                raise RuntimeError(f"the server died:\n{server.log_tail()}")
        result.failed_release_cycles = server.log_tail(10**7).count('"release cycle failed"')
        result.releases = count_releases(env)
    return result


def markdown(result: SoakResult, args: argparse.Namespace) -> str:
    mib = 1024
    lines = [
        f"capacity {result.capacity_rps:.1f} uploads/s (closed loop, concurrency "
        f"{args.concurrency}, {args.capacity_seconds:.0f} s); open loop at {args.load:.0%}: "
        f"{result.target_rps:.1f}/s for {result.duration_s:.0f} s; cpus {os.cpu_count()}",
        "",
        "| window | uploads | errors | of which shed | error rate | p50 (ms) | p99 (ms) "
        "| RSS API (MiB) | RSS API + decoders (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w in result.windows:
        start = w.index * result.window_s
        end = min(start + result.window_s, result.duration_s)
        lines.append(
            f"| {start:.0f}–{end:.0f} s | {w.uploads} | {w.errors} | {w.shed} | "
            f"{w.error_rate:.2%} | "
            f"{w.p50_ms:.0f} | {w.p99_ms:.0f} | {w.rss_kib / mib:.1f} | "
            f"{w.rss_total_kib / mib:.1f} |"
        )
    lines += [
        "",
        f"total: {result.uploads} uploads at {result.achieved_rps:.1f}/s, {result.errors} errors "
        f"({result.error_rate:.2%}); releases: {result.releases}, failed release cycles "
        f"(retried by the next): {result.failed_release_cycles}",
        "outcomes: " + ", ".join(f"{name}: {count}" for name, count in result.outcomes.items()),
        f"API RSS: {result.rss_start_kib / mib:.1f} MiB at start, "
        f"{result.rss_warm_kib / mib:.1f} MiB after the capacity burst, "
        f"{result.rss_end_kib / mib:.1f} MiB at the end; with decoder workers "
        f"{result.rss_total_start_kib / mib:.1f} → {result.rss_total_end_kib / mib:.1f} MiB",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="open-loop seconds")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per table row")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of capacity")
    parser.add_argument("--capacity-seconds", type=float, default=60.0,
                        help="closed-loop burst; spans release cycles, so it includes them")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop burst")
    parser.add_argument("--max-in-flight", type=int, default=64,
                        help="unanswered uploads beyond which a due upload is shed")
    parser.add_argument("--release-interval", type=int, default=15,
                        help="seconds between release cycles in the server")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--fsdd", type=Path, default=fsdd_recordings(),
                        help="folder of FSDD WAV recordings (default: CHORUS_DATA_DIR's)")
    return parser.parse_args(argv)


def _stopping(server: ChorusProcess) -> Callable[[int, object], None]:
    """A SIGTERM handler that stops the server first, then unwinds."""

    def stop(signum: int, _frame: object) -> None:
        server.stop()
        raise SystemExit(128 + signum)

    return stop


def main() -> None:
    args = parse_args()
    result = run_soak(args)
    text = markdown(result, args)
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
