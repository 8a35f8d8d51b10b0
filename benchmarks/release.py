"""Release throughput (clips/s) and peak memory of the release job.

Seeds BUCKETS ready buckets of CLIPS pending clips each (a real FSDD recording re-encoded as
FLAC; every clip its own contributor), then times one ``release_ready_buckets`` run in a fresh
subprocess, whose peak resident memory (VmHWM) is reported next to its peak right before the
release starts (interpreter, imports, database and store clients). Back ends: the file
store, and SeaweedFS's S3 gateway started on free loopback ports.

    .venv/bin/python benchmarks/release.py                         # 1,000 × 100, both stores
    .venv/bin/python benchmarks/release.py --buckets 20 --clips 50 # quick run
    .venv/bin/python benchmarks/release.py --buckets 1 --clips 100000 --store file
    .venv/bin/python benchmarks/release.py --buckets 4 --clips 50 --store file --voice mcadams

``--voice`` releases under the demo policy with that ``voice_anonymization``: the clips/s of a
release that anonymizes every voice, against ``none`` (a server-side copy) in another run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
FSDD = REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
SAMPLE = "7_jackson_32.wav"
# Sibling benchmark scripts (ingest.py, …) would shadow the packages of the same name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO_ROOT))


def _flac_sample() -> tuple[bytes, float, int]:
    samples, rate = sf.read(FSDD / SAMPLE, dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue(), len(samples) / rate, int(rate)


def seed(database_url: str, store_url: str, *, buckets: int, clips: int) -> None:
    """Ready buckets written straight to the tables and the store (seeding is not timed)."""
    import sqlalchemy as sa

    from aggregate.buckets import pending_object_key
    from aggregate.tables import Bucket, PendingClip
    from core.db import Database
    from core.ids import new_id
    from core.storage import open_store
    from exercises.tables import ExerciseUsage

    data, duration, rate = _flac_sample()
    database = Database(database_url)
    database.upgrade()
    store = open_store(store_url)
    pool = ThreadPoolExecutor(max_workers=16)  # seeding is fsync-bound, not timed
    for b in range(buckets):
        bucket_id = new_id()
        rows = []
        keys = [pending_object_key() for _ in range(clips)]
        list(pool.map(lambda key: store.put(key, data), keys))
        for key in keys:
            rows.append(
                {
                    "id": new_id(),
                    "bucket_id": bucket_id,
                    "contributor_tag": new_id() + new_id(),
                    "slot": 0,
                    "object_key": key,
                    "duration_s": duration,
                    "sample_rate": rate,
                    "loudness_dbfs": -20.0,
                }
            )
        with database.session() as session:
            session.add(
                Bucket(
                    id=bucket_id,
                    exercise_id=f"bench-{b}",
                    state="open",
                    opened_cycle=0,
                )
            )
            # Listed in the usage catalog: the release re-checks P5 and retires unlisted ones.
            session.add(ExerciseUsage(exercise_id=f"bench-{b}", learners=100_000))
            session.flush()
            for start in range(0, len(rows), 5000):
                session.execute(sa.insert(PendingClip), rows[start : start + 5000])
    pool.shutdown()
    database.dispose()


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM starts afresh at exec; ru_maxrss (the
    fallback off Linux) may carry the parent's peak over."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_release(
    database_url: str, store_url: str, batch_size: int, voice: str = "none"
) -> dict[str, float]:
    """In the measuring subprocess: one release run, timed, with its memory figures."""
    from aggregate.release import release_ready_buckets
    from core.db import Database
    from core.keystore import MemoryKeyStore
    from core.storage import open_store
    from policies.policy import load_policy

    database = Database(database_url)
    store = open_store(store_url)
    demo = load_policy("demo")
    policy = type(demo).model_validate({**demo.model_dump(), "voice_anonymization": voice})
    baseline_mb = _peak_rss_mb()
    started = time.perf_counter()
    outcomes = release_ready_buckets(
        database, store, policy, keys=MemoryKeyStore(), batch_size=batch_size
    )
    seconds = time.perf_counter() - started
    database.dispose()
    return {
        "buckets": len(outcomes),
        "clips": sum(o.clip_count for o in outcomes),
        "seconds": seconds,
        "baseline_rss_mb": round(baseline_mb, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


@contextmanager
def _store(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "file":
        yield f"file://{workdir / 'blobs'}"
        return
    from chorus.devservers import SeaweedServer

    with SeaweedServer(workdir / "seaweed") as server:
        yield server.storage_url("bench")


def bench(
    kind: str,
    *,
    buckets: int,
    clips: int,
    batch_size: int,
    database: str | None,
    voice: str = "none",
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
        workdir = Path(tmp)
        database_url = database or f"sqlite:///{workdir / 'chorus.db'}"
        with _store(kind, workdir) as store_url:
            t0 = time.perf_counter()
            seed(database_url, store_url, buckets=buckets, clips=clips)
            seeding = time.perf_counter() - t0
            result = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    database_url,
                    store_url,
                    "--batch-size",
                    str(batch_size),
                    "--voice",
                    voice,
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            )
            if result.returncode != 0:
                raise SystemExit(f"the measured release failed:\n{result.stderr}")
        figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures.update(
        store=kind,
        voice=voice,
        database=database_url.split(":", 1)[0],
        seeding_s=round(seeding, 1),
        clips_per_s=round(figures["clips"] / figures["seconds"], 1),
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--buckets", type=int, default=1000)
    parser.add_argument("--clips", type=int, default=100, help="clips per bucket")
    parser.add_argument("--store", choices=("file", "seaweed", "both"), default="both")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--database", help="a database URL (default: a fresh SQLite file)")
    parser.add_argument("--voice", choices=("none", "mcadams", "world"), default="none",
                        help="the policy's voice_anonymization for the release")
    parser.add_argument(
        "--measure", nargs=2, metavar=("DATABASE_URL", "STORE_URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(run_release(*args.measure, args.batch_size, args.voice)))
        return
    kinds = ("file", "seaweed") if args.store == "both" else (args.store,)
    for kind in kinds:
        figures = bench(
            kind,
            buckets=args.buckets,
            clips=args.clips,
            batch_size=args.batch_size,
            database=args.database,
            voice=args.voice,
        )
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
