"""Release throughput (clips/s) against ``tar`` of the same pending blobs, and peak memory of
the release job against the bucket size, in one run.

For each store (the file store, and SeaweedFS's S3 gateway started on free loopback ports) it
seeds BUCKETS ready buckets of CLIPS pending clips each (a real FSDD recording re-encoded as
FLAC; every clip its own contributor), times ``tar cf`` of the same pending blobs as local files
(the file store's own pending folder; for SeaweedFS a local copy of the same blobs), then times
one ``release_ready_buckets`` run in a fresh subprocess, whose peak resident memory (VmHWM) is
reported next to its peak right before the release starts. Then, on the file store, it
releases single buckets of each size in --memory-sizes and reports the peak memory of each.

    .venv/bin/python benchmarks/release.py                          # 100 × 100, both stores
    .venv/bin/python benchmarks/release.py --quick                  # 10 × 100, smaller sizes
    .venv/bin/python benchmarks/release.py --store file --memory-sizes 1000,100000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
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
SAMPLE = "7_jackson_32.wav"
# Sibling benchmark scripts (ingest.py, …) would shadow the packages of the same name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO_ROOT))


def _fsdd() -> Path:
    """The FSDD recordings ``core.sample_data`` finds; SAMPLE is among the fixtures too."""
    from core.sample_data import find_sample_data

    found = find_sample_data()
    if found is None:
        raise SystemExit("no FSDD recordings: set CHORUS_DATA_DIR (README: Test data)")
    return found.fsdd


# Bucket keys shared by the seeding process and the measured release (as the service shares
# them with its release job): a tmpfs folder of this run's own.
KEY_STORE_URL = os.environ.get(
    "CHORUS_KEY_STORE_URL", f"tmpfs:///dev/shm/chorus-bench-keys-{os.getppid()}-{os.getpid()}"
)


def _flac_sample() -> tuple[bytes, float, int]:
    samples, rate = sf.read(_fsdd() / SAMPLE, dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue(), len(samples) / rate, int(rate)


def seed(
    database_url: str, store_url: str, *, buckets: int, clips: int, copy_to: Path | None = None
) -> None:
    """Ready buckets written straight to the tables and the store (seeding is not timed);
    with ``copy_to``, each blob is also written there as a local file, for the tar baseline."""
    import sqlalchemy as sa

    from aggregate.buckets import key_name, pending_object_key
    from aggregate.pending import PendingFacts, seal_facts
    from aggregate.tables import Bucket, PendingClip
    from core.db import Database
    from core.ids import new_id, new_secret
    from core.keystore import open_key_store
    from core.sealing import Sealer
    from core.storage import open_store
    from exercises.tables import ExerciseUsage

    data, duration, rate = _flac_sample()
    database = Database(database_url)
    database.upgrade()
    store = open_store(store_url)
    pool = ThreadPoolExecutor(max_workers=16)  # seeding is fsync-bound, not timed
    key_store = open_key_store(KEY_STORE_URL, database_url=database_url)
    facts = PendingFacts(
        duration_s=duration, sample_rate=rate, loudness_dbfs=-20.0, source_sample_rate=rate
    )
    for b in range(buckets):
        bucket_id = new_id()
        # Pending clips are sealed under their bucket's memory-only key, as uploads store them.
        sealer = Sealer(
            key_store.put_if_absent(key_name(bucket_id), new_secret(32)), bucket_id=bucket_id
        )
        rows = []
        keys = [pending_object_key() for _ in range(clips)]
        sealed = {key: sealer.seal_blob(data, record=key) for key in keys}
        list(pool.map(store.put, keys, [sealed[key] for key in keys]))
        if copy_to is not None:
            for key in keys:
                path = copy_to / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        for key in keys:
            row_id = new_id()
            rows.append(
                {
                    "id": row_id,
                    "bucket_id": bucket_id,
                    "contributor_tag": new_id() + new_id(),
                    "slot": 0,
                    "object_key": key,
                    "recording_tag": new_id() + new_id(),
                    "sealed_facts": seal_facts(sealer, row_id, facts),
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
            session.add(
                ExerciseUsage(
                    exercise_id=f"bench-{b}",
                    learners=100_000,
                    language="en",
                    text="Say seven.",
                )
            )
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


def run_release(database_url: str, store_url: str, batch_size: int) -> dict[str, float]:
    """In the measuring subprocess: one release run, timed, with its memory figures."""
    from aggregate.release import release_ready_buckets
    from core.db import Database
    from core.keystore import open_key_store
    from core.storage import open_store
    from policies.policy import load_policy

    database = Database(database_url)
    store = open_store(store_url)
    policy = load_policy("demo")
    baseline_mb = _peak_rss_mb()
    started = time.perf_counter()
    outcomes = release_ready_buckets(
        database,
        store,
        policy,
        keys=open_key_store(KEY_STORE_URL, database_url=database_url),
        batch_size=batch_size,
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


def tar_baseline(folder: Path, out: Path) -> float:
    """Seconds ``tar cf`` takes to pack ``folder/pending`` into ``out`` (then the tar is
    removed)."""
    started = time.perf_counter()
    subprocess.run(["tar", "cf", str(out), "-C", str(folder), "pending"], check=True)
    seconds = time.perf_counter() - started
    out.unlink()
    return seconds


def _measure(database_url: str, store_url: str, batch_size: int) -> dict[str, float]:
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--measure",
            database_url,
            store_url,
            "--batch-size",
            str(batch_size),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "CHORUS_KEY_STORE_URL": KEY_STORE_URL},
    )
    if result.returncode != 0:
        raise SystemExit(f"the measured release failed:\n{result.stderr}")
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def bench(
    kind: str, *, buckets: int, clips: int, batch_size: int, database: str | None
) -> dict[str, object]:
    """Release throughput on one store, next to ``tar`` of the same pending blobs."""
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
        workdir = Path(tmp)
        database_url = database or f"sqlite:///{workdir / 'chorus.db'}"
        with _store(kind, workdir) as store_url:
            local = workdir / "blobs" if kind == "file" else workdir / "local-copy"
            t0 = time.perf_counter()
            seed(
                database_url,
                store_url,
                buckets=buckets,
                clips=clips,
                copy_to=None if kind == "file" else local,
            )
            seeding = time.perf_counter() - t0
            tar_s = tar_baseline(local, workdir / "pending.tar")
            if kind != "file":
                shutil.rmtree(local)
            measured = _measure(database_url, store_url, batch_size)
    release_rate = measured["clips"] / measured["seconds"]
    tar_rate = buckets * clips / tar_s
    figures: dict[str, object] = dict(measured)
    figures.update(
        store=kind,
        database=database_url.split(":", 1)[0],
        seeding_s=round(seeding, 1),
        clips_per_s=round(release_rate, 1),
        tar_s=round(tar_s, 2),
        tar_clips_per_s=round(tar_rate, 1),
        ratio_to_tar=round(release_rate / tar_rate, 3),
    )
    return figures


def memory(sizes: list[int], *, batch_size: int) -> list[dict[str, object]]:
    """Peak memory of the release job for one bucket of each size (file store)."""
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
            workdir = Path(tmp)
            database_url = f"sqlite:///{workdir / 'chorus.db'}"
            store_url = f"file://{workdir / 'blobs'}"
            seed(database_url, store_url, buckets=1, clips=size)
            measured = _measure(database_url, store_url, batch_size)
        figures: dict[str, object] = dict(measured)
        figures.update(
            bucket_clips=size,
            growth_mb=round(measured["peak_rss_mb"] - measured["baseline_rss_mb"], 1),
        )
        rows.append(figures)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--buckets", type=int, default=100)
    parser.add_argument("--clips", type=int, default=100, help="clips per bucket")
    parser.add_argument("--store", choices=("file", "seaweed", "both"), default="both")
    parser.add_argument("--batch-size", type=int, default=1000, help="clips per shard")
    parser.add_argument(
        "--memory-sizes",
        default="1000,10000,50000",
        help="bucket sizes whose peak memory is measured (file store); empty: none",
    )
    parser.add_argument("--quick", action="store_true", help="10 × 100 and sizes 500,5000")
    parser.add_argument("--database", help="a database URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--measure", nargs=2, metavar=("DATABASE_URL", "STORE_URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        database_url, store_url = args.measure
        print(json.dumps(run_release(database_url, store_url, args.batch_size)))
        return
    if args.quick:
        args.buckets, args.clips, args.memory_sizes = 10, 100, "500,5000"
    kinds = ("file", "seaweed") if args.store == "both" else (args.store,)
    for kind in kinds:
        figures = bench(
            kind,
            buckets=args.buckets,
            clips=args.clips,
            batch_size=args.batch_size,
            database=args.database,
        )
        print(json.dumps(figures), flush=True)
    sizes = [int(size) for size in args.memory_sizes.split(",") if size.strip()]
    for row in memory(sizes, batch_size=args.batch_size):
        print(json.dumps({"memory": row}), flush=True)


if __name__ == "__main__":
    main()
