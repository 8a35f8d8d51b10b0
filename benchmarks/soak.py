"""Soak: a bounded loopback upload load at half the measured capacity, watched over time.

One ``chorus serve`` on the embedded default (SQLite + file store under a temporary folder,
demo policy, a release cycle every ``--release-interval`` seconds) takes real FSDD recordings,
each from a distinct learner. First a closed-loop burst, long enough to span release cycles,
measures capacity (uploads/s at a fixed concurrency); then an open-loop load sends uploads at
``--load`` × that rate on a fixed schedule, whether or not earlier ones have been answered, for
``--duration`` seconds. Every upload carries a fresh Idempotency-Key, and every
``--retry-every``-th is sent again with the same key once answered, as an app that lost the
answer would. Latency counts from each upload's scheduled time, so a server falling
behind shows up as latency, not as a slower load; an upload due while ``--max-in-flight`` are
unanswered is shed and counted as an error.

Reported per ``--window``: uploads, throughput, errors (anything but 201: refusals, transport
errors and shed uploads), p50, p99 and max latency, the server's resident memory (VmRSS from
/proc: the API process, and the API process with its decoder workers), the idempotency store's
entries and files and what /dev/shm holds in all, at the window's end. At the end, a census:
every acknowledged upload is a pending row or a released clip, and none is stored twice.

    PYTHONPATH=. .venv/bin/python -m benchmarks.soak [--duration 1800] [--window 60] [--out soak.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.service_env import embedded_service, fsdd_recordings  # noqa: E402
from core.idempotency import new_key  # noqa: E402

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
    retry: bool = False  # the same request again, with the same Idempotency-Key


@dataclass(frozen=True)
class ShmUse:
    """What /dev/shm holds: this service's idempotency store (entries, bytes) and in all."""

    entries: int
    store_bytes: int
    used_bytes: int


@dataclass
class Window:
    index: int
    uploads: int
    errors: int  # answers other than 201, transport errors and shed uploads
    shed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_kib: int
    rss_total_kib: int
    shm: ShmUse
    window_s: float = 60.0

    @property
    def throughput_rps(self) -> float:
        return (self.uploads - self.errors) / self.window_s

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
    capacity_accepted: int = 0
    accepted: int = 0  # distinct uploads answered 201 (a retry counts with its first)
    pending_rows: int = 0
    released_clips: int = 0
    released_twice: int = 0  # released recordings whose bytes are another's
    purged_buckets: int = 0
    purged_clips: int = 0  # clips of purged buckets, as their audit entries count them
    purges: list[str] = field(default_factory=list)  # each purge's audit entry, in brief
    evidence: Path | None = None  # the database and log, kept when the census found a loss

    @property
    def stored(self) -> int:
        return self.pending_rows + self.released_clips

    @property
    def lost(self) -> int:
        """Accepted uploads neither stored nor purged by policy (with an audit entry)."""
        return max(0, self.accepted - self.stored - self.purged_clips)

    @property
    def duplicated(self) -> int:
        return max(0, self.stored - self.accepted) + self.released_twice

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

    files = sorted((path for path in fsdd.glob("*.wav") if path.stat().st_size > 8000), key=order)
    speakers = len({path.stem.split("_")[1] for path in files})
    clips = [path.read_bytes() for path in files[: count - count % max(speakers, 1)]]
    if len(clips) < 10 or speakers < UPLOADS_PER_EXERCISE:
        raise SystemExit(f"too few FSDD recordings or speakers in {fsdd}")
    return clips


def prepare_service(
    workdir: Path, *, release_interval: int, key_store: Path
) -> tuple[dict[str, str], str]:
    """Environment of the embedded default with a usage catalog; returns (env, private PEM)."""
    return embedded_service(
        workdir,
        exercises=EXERCISES,
        CHORUS_SCHEDULER_ENABLED="true",
        CHORUS_RELEASE_INTERVAL=str(release_interval),
        CHORUS_KEY_STORE_URL=f"tmpfs://{key_store}",
    )


def unique_recording(clip: bytes, serial: int) -> bytes:
    """The WAV with ``serial`` written into the lowest bit of its first 32 samples (inaudible):
    each upload is a recording of its own, as each learner's is, so a recording released twice
    can only be one stored twice."""
    start = clip.index(b"data") + 8
    audio = bytearray(clip)
    for bit in range(32):
        index = start + 2 * bit  # the low byte of a 16-bit little-endian sample
        audio[index] = (audio[index] & 0xFE) | ((serial >> bit) & 1)
    return bytes(audio)


class Uploader:
    """Uploads clips, each as a new learner, and keeps what happened.

    Each upload borrows a client of its own from ``clients`` (one connection each): one shared
    httpx client with a large pool costs several times more CPU per request as its pool grows,
    and on a shared machine a load generator that slows down as a backlog forms would make
    the backlog itself.
    """

    def __init__(
        self,
        clients: list[httpx.AsyncClient],
        clips: list[bytes],
        private_pem: str,
        *,
        retry_every: int = 0,
    ) -> None:
        self.free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for client in clients:
            self.free.put_nowait(client)
        self.clips = clips
        self.key = load_private_key(private_pem)
        self.serial = 0
        self.retry_every = retry_every

    def _request(self) -> tuple[str, bytes, str, str]:
        self.serial += 1
        token = mint_token(self.key, learner_id=f"soak-{self.serial}")
        # Serials start at 1: uploads 1–5 go to the first exercise, so each bucket fills to k.
        exercise = EXERCISES[((self.serial - 1) // UPLOADS_PER_EXERCISE) % EXERCISE_COUNT]
        metadata = json.dumps({"exercise_id": exercise})
        clip = unique_recording(self.clips[self.serial % len(self.clips)], self.serial)
        return token, clip, metadata, new_key()

    async def upload(self, scheduled: float) -> Sample:
        request = self._request()
        sample = await self._send(scheduled, *request)
        if self.retry_every and self.serial % self.retry_every == 0 and sample.ok:
            again = await self._send(time.perf_counter(), *request)
            again.retry = True
            if not again.ok:  # the first answer again, or the retry is the soak's error
                sample.ok, sample.outcome = False, f"retry {again.outcome}"
        return sample

    async def _send(
        self, scheduled: float, token: str, clip: bytes, metadata: str, key: str
    ) -> Sample:
        client = await self.free.get()
        try:
            response = await client.post(
                "/v1/clips",
                files=[
                    ("metadata", (None, metadata.encode(), "application/json")),
                    ("audio", ("clip.wav", clip, "audio/wav")),
                ],
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
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


async def measure_capacity(
    uploader: Uploader, *, seconds: float, concurrency: int
) -> tuple[float, int]:
    """Closed loop: ``concurrency`` uploads always in flight; returns (answered uploads/s,
    uploads accepted)."""
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
    return done / (time.perf_counter() - started), done


def shm_use(store: Path) -> ShmUse:
    """The idempotency store's entries and files, and what /dev/shm holds in all."""
    entries = 0
    with contextlib.suppress(sqlite3.Error):
        connection = sqlite3.connect(f"file:{store / 'entries.sqlite'}?mode=ro", uri=True)
        try:
            entries = connection.execute("SELECT count(*) FROM entries").fetchone()[0]
        finally:
            connection.close()
    store_bytes = sum(path.stat().st_size for path in store.glob("*")) if store.is_dir() else 0
    shm = os.statvfs("/dev/shm")
    return ShmUse(entries, store_bytes, (shm.f_blocks - shm.f_bfree) * shm.f_frsize)


async def open_loop(
    uploader: Uploader,
    *,
    rate: float,
    duration_s: float,
    window_s: float,
    server_pid: int,
    max_in_flight: int,
    store: Path,
) -> tuple[list[Sample], list[tuple[int, int, ShmUse]]]:
    """Send at ``rate``/s on a fixed schedule; sample RSS at the end of each window.

    An upload due while ``max_in_flight`` are unanswered is not sent and counts as an error
    (shed): a backlog without bound would measure the load generator, not the server.
    """
    samples: list[Sample] = []
    rss: list[tuple[int, int, ShmUse]] = []
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()

    async def one(offset: float) -> None:
        sample = await uploader.upload(start + offset)
        sample.offset_s = offset
        samples.append(sample)

    async def watch_memory() -> None:
        for index in range(1, int(np.ceil(duration_s / window_s)) + 1):
            await asyncio.sleep(
                max(0.0, start + min(index * window_s, duration_s) - time.perf_counter())
            )
            rss.append((rss_kib(server_pid), rss_total_kib(server_pid), shm_use(store)))
            failed = sum(not sample.ok for sample in samples)
            print(
                f"[{time.perf_counter() - start:5.0f} s] answered {len(samples)}, "
                f"failed {failed}, in flight {len(tasks)}, RSS {rss[-1][0] // 1024} MiB",
                file=sys.stderr,
                flush=True,
            )

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
    samples: list[Sample], rss: list[tuple[int, int, ShmUse]], *, window_s: float
) -> list[Window]:
    windows = []
    for index, (rss_main, rss_all, shm) in enumerate(rss):
        inside = [s for s in samples if index * window_s <= s.offset_s < (index + 1) * window_s]
        latencies = [s.latency_ms for s in inside if not s.shed] or [0.0]
        windows.append(
            Window(
                index=index,
                uploads=len(inside),
                errors=sum(not s.ok for s in inside),
                shed=sum(s.shed for s in inside),
                p50_ms=float(np.percentile(latencies, 50)),
                p99_ms=float(np.percentile(latencies, 99)),
                max_ms=max(latencies),
                rss_kib=rss_main,
                rss_total_kib=rss_all,
                shm=shm,
                window_s=window_s,
            )
        )
    return windows


def take_census(env: dict[str, str], result: SoakResult) -> None:
    """Releases, pending rows and released clips; released recordings that repeat another."""
    import sqlalchemy as sa

    from aggregate.tables import Bucket, BucketState, PendingClip, Release, ReleasedClip
    from core.db import Database
    from policies.tables import AuditEntry

    database = Database(env["CHORUS_DATABASE_URL"])

    def count(statement: sa.Select[Any]) -> int:
        with database.session() as session:
            found: int = session.execute(statement).scalar_one()
        return found

    try:
        result.releases = count(sa.select(sa.func.count()).select_from(Release))
        result.pending_rows = count(sa.select(sa.func.count()).select_from(PendingClip))
        result.released_clips = count(sa.select(sa.func.count()).select_from(ReleasedClip))
        distinct = count(sa.select(sa.func.count(sa.distinct(ReleasedClip.sha256))))
        result.released_twice = result.released_clips - distinct
        result.purged_buckets = count(
            sa.select(sa.func.count()).select_from(Bucket).where(Bucket.state == BucketState.PURGED)
        )
        with database.session() as session:
            entries = session.execute(
                sa.select(AuditEntry.cycle, AuditEntry.body)
                .where(AuditEntry.kind == "purge")
                .order_by(AuditEntry.seq)
            ).all()
        for cycle, body in entries:
            facts = json.loads(body)
            result.purged_clips += int(facts["clip_count"])
            result.purges.append(
                f"cycle {cycle}: {facts.get('reason', 'retention')}, {facts['clip_count']} clips "
                f"of {facts['contributor_count']} contributors"
            )
    finally:
        database.dispose()


async def _drive(
    server: ChorusProcess,
    clips: list[bytes],
    private_pem: str,
    args: argparse.Namespace,
    result: SoakResult,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=server.url, timeout=60))
            for _ in range(args.max_in_flight)
        ]
        uploader = Uploader(clients, clips, private_pem, retry_every=args.retry_every)
        result.capacity_rps, result.capacity_accepted = await measure_capacity(
            uploader, seconds=args.capacity_seconds, concurrency=args.concurrency
        )
        result.target_rps = result.capacity_rps * args.load
        result.rss_warm_kib = rss_kib(server.pid)
        samples, rss = await open_loop(
            uploader,
            rate=result.target_rps,
            duration_s=args.duration,
            window_s=args.window,
            server_pid=server.pid,
            max_in_flight=args.max_in_flight,
            store=_idempotency_folder(server),
        )
    result.windows = summarize(samples, rss, window_s=args.window)
    result.outcomes = dict(Counter(sample.outcome for sample in samples).most_common())
    result.accepted = result.capacity_accepted + sum(sample.ok for sample in samples)


def _idempotency_folder(server: ChorusProcess) -> Path:
    from core.keystore import namespace_for

    base = server.env["CHORUS_KEY_STORE_URL"].removeprefix("tmpfs://")
    return Path(base) / f"chorus-idempotency-{namespace_for(server.env['CHORUS_DATABASE_URL'])()}"


def run_soak(args: argparse.Namespace) -> SoakResult:
    result = SoakResult(0.0, 0.0, args.duration, args.window)
    clips = load_clips(args.fsdd)
    with (
        tempfile.TemporaryDirectory(prefix="chorus-soak-") as tmp,
        tempfile.TemporaryDirectory(prefix="chorus-soak-keys-", dir="/dev/shm") as key_store,
    ):
        workdir = Path(tmp)
        env, private_pem = prepare_service(
            workdir, release_interval=args.release_interval, key_store=Path(key_store)
        )
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
        take_census(env, result)
        if result.lost or result.duplicated or result.purged_buckets:
            kept = Path(tempfile.mkdtemp(prefix="chorus-soak-evidence-"))
            for name in ("chorus.db", "chorus.db-wal", "serve.log"):
                if (workdir / name).exists():
                    shutil.copy2(workdir / name, kept / name)
            result.evidence = kept
    return result


def markdown(result: SoakResult, args: argparse.Namespace) -> str:
    mib = 1024
    lines = [
        f"capacity {result.capacity_rps:.1f} uploads/s (closed loop, concurrency "
        f"{args.concurrency}, {args.capacity_seconds:.0f} s); open loop at {args.load:.0%}: "
        f"{result.target_rps:.1f}/s for {result.duration_s:.0f} s; cpus {os.cpu_count()}",
        "",
        "| window | uploads | accepted/s | errors | of which shed | p50 (ms) | p99 (ms) "
        "| max (ms) | RSS API (MiB) | RSS API + decoders (MiB) | idempotency entries "
        "| idempotency store (KiB) | /dev/shm used (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in result.windows:
        start = w.index * result.window_s
        end = min(start + result.window_s, result.duration_s)
        lines.append(
            f"| {start:.0f}–{end:.0f} s | {w.uploads} | {w.throughput_rps:.1f} | {w.errors} | "
            f"{w.shed} | {w.p50_ms:.0f} | {w.p99_ms:.0f} | {w.max_ms:.0f} | "
            f"{w.rss_kib / mib:.1f} | {w.rss_total_kib / mib:.1f} | {w.shm.entries} | "
            f"{w.shm.store_bytes / 1024:.0f} | {w.shm.used_bytes / mib / mib:.1f} |"
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
        f"census: {result.accepted} uploads accepted, {result.pending_rows} pending rows + "
        f"{result.released_clips} released clips = {result.stored} stored, "
        f"{result.purged_clips} purged by policy; lost "
        f"{result.lost}, duplicated {result.duplicated} (recordings released twice: "
        f"{result.released_twice}); purged buckets: {result.purged_buckets}",
        *(f"purged: {purge}" for purge in result.purges),
    ]
    if result.evidence is not None:
        lines.append(f"database and log kept in {result.evidence}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="open-loop seconds")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per table row")
    parser.add_argument("--load", type=float, default=0.5, help="fraction of capacity")
    parser.add_argument(
        "--retry-every",
        type=int,
        default=20,
        help="send every n-th upload twice with its Idempotency-Key (0: never)",
    )
    parser.add_argument(
        "--capacity-seconds",
        type=float,
        default=60.0,
        help="closed-loop burst; spans release cycles, so it includes them",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop burst")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="unanswered uploads beyond which a due upload is shed",
    )
    parser.add_argument(
        "--release-interval",
        type=int,
        default=15,
        help="seconds between release cycles in the server",
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument(
        "--fsdd",
        type=Path,
        default=fsdd_recordings(),
        help="folder of FSDD WAV recordings (default: CHORUS_DATA_DIR's)",
    )
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
