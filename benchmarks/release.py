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
    .venv/bin/python benchmarks/release.py --quick --layout both --database postgres

``--layout rows`` measures a prototype of the other place pending clips could live: each
sealed clip as a ``BLOB``/``bytea`` row of a ``pending_audio`` table beside its pending row
(``RowPendingStore``), written in the upload's own transaction; the release reads a shard's
worth of them in one query and deletes a batch in one statement, and the blob store holds only
the release's own files. ``--layout both`` measures both layouts, interleaved, in one run.
``--database postgres`` runs each measurement on a fresh PostgreSQL database
(``chorus.devservers.provision_postgres_database``).
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
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

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
    database_url: str,
    store_url: str,
    *,
    buckets: int,
    clips: int,
    copy_to: Path | None = None,
    layout: str = "objects",
) -> None:
    """Ready buckets written straight to the tables and the store (seeding is not timed);
    with ``copy_to``, each blob is also written there as a local file, for the tar baseline.
    Under ``layout="rows"`` the sealed clips are rows of ``pending_audio`` instead."""
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
    audio = None
    if layout == "rows":
        create_audio_table(database)
        audio = _audio_table()
    for b in range(buckets):
        bucket_id = new_id()
        # Pending clips are sealed under their bucket's memory-only key, as uploads store them.
        sealer = Sealer(
            key_store.put_if_absent(key_name(bucket_id), new_secret(32)), bucket_id=bucket_id
        )
        rows = []
        keys = [pending_object_key() for _ in range(clips)]
        sealed = {key: sealer.seal_blob(data, record=key) for key in keys}
        if audio is None:
            list(pool.map(store.put, keys, [sealed[key] for key in keys]))
        if copy_to is not None:
            for key in keys:
                path = copy_to / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(sealed[key])
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
            if audio is not None:
                for start in range(0, len(keys), 500):
                    session.execute(
                        audio.insert(),
                        [
                            {"object_key": key, "bucket_id": bucket_id, "sealed": sealed[key]}
                            for key in keys[start : start + 500]
                        ],
                    )
    pool.shutdown()
    database.dispose()


# --- layout (b), prototyped: sealed clips as rows beside their pending row -------------------

PENDING_AUDIO = "pending_audio"


def _audio_table() -> Any:
    """``pending_audio``: one sealed clip per row, keyed by its pending object key (a separate
    rowid table: ``pending_clips`` is WITHOUT ROWID, which SQLite advises only for small
    rows). On PostgreSQL the column is stored out of line without compression (ciphertext
    does not compress)."""
    import sqlalchemy as sa

    metadata = sa.MetaData()
    return sa.Table(
        PENDING_AUDIO,
        metadata,
        sa.Column("object_key", sa.String(300), primary_key=True),
        sa.Column("bucket_id", sa.String(32), nullable=False, index=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )


def create_audio_table(database: Any) -> None:
    import sqlalchemy as sa

    table = _audio_table()
    table.metadata.create_all(database.engine)
    if database.is_postgres:
        with database.engine.begin() as connection:
            connection.execute(
                sa.text(f"ALTER TABLE {PENDING_AUDIO} ALTER COLUMN sealed SET STORAGE EXTERNAL")
            )


class RowPendingStore:
    """The blob store, but pending objects (``pending/…``) are rows of ``pending_audio`` in
    the service's database. ``prefetch`` reads a shard's clips in one query; ``delete_many``
    removes a batch in one statement. Everything else (release shards, dataset files) goes to
    the wrapped store. ``put`` of a pending object inside ``in_upload`` is held back and
    inserted by ``insert_held`` in the upload's own transaction (one transaction an upload)."""

    def __init__(self, database: Any, store: Any) -> None:
        self._database = database
        self._store = store
        self._table = _audio_table()
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._held = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @staticmethod
    def _pending(key: str) -> bool:
        return key.startswith("pending/")

    def put(self, key: str, data: bytes) -> None:
        if not self._pending(key):
            self._store.put(key, data)
            return
        self._held.value = (key, data)

    def insert_held(self, connection: Any, bucket_id: str) -> None:
        key, data = self._held.value
        connection.execute(
            self._table.insert(), {"object_key": key, "bucket_id": bucket_id, "sealed": data}
        )

    def prefetch(self, keys: Sequence[str]) -> None:
        import sqlalchemy as sa

        wanted = [key for key in keys if self._pending(key)]
        found: dict[str, bytes] = {}
        with self._database.connection() as connection:
            for start in range(0, len(wanted), 1000):
                rows = connection.execute(
                    sa.select(self._table.c.object_key, self._table.c.sealed).where(
                        self._table.c.object_key.in_(wanted[start : start + 1000])
                    )
                ).all()
                found.update({row.object_key: bytes(row.sealed) for row in rows})
        with self._lock:
            self._cache.update(found)

    def get(self, key: str) -> bytes:
        import sqlalchemy as sa

        from core.errors import BlobNotFound

        if not self._pending(key):
            return bytes(self._store.get(key))
        with self._lock:
            cached = self._cache.pop(key, None)
        if cached is not None:
            return cached
        with self._database.connection() as connection:
            value = connection.execute(
                sa.select(self._table.c.sealed).where(self._table.c.object_key == key)
            ).scalar_one_or_none()
        if value is None:
            raise BlobNotFound(f"no object {key!r}")
        return bytes(value)

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def delete_many(self, keys: Sequence[str]) -> None:
        pending = [key for key in keys if self._pending(key)]
        others = [key for key in keys if not self._pending(key)]
        if pending:
            with self._database.connection(write=True) as connection:
                connection.execute(
                    self._table.delete().where(self._table.c.object_key.in_(pending))
                )
            with self._lock:
                for key in pending:
                    self._cache.pop(key, None)
        if others:
            self._store.delete_many(others)


def _prefetching_shards() -> None:
    """Make each shard read its clips' sealed rows in one query before its read workers open
    them (the prototype's batched read; the product's release reads one object a clip)."""
    import aggregate.release as release

    write_shard = release._write_shard

    def write_shard_prefetched(
        database: Any, store: Any, claim: Any, index: int, clips: Any, **kwargs: Any
    ) -> Any:
        store.prefetch([clip.source_key for clip in clips])
        return write_shard(database, store, claim, index, clips, **kwargs)

    release._write_shard = write_shard_prefetched


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
    database_url: str,
    store_url: str,
    batch_size: int,
    layout: str = "objects",
    bucket_workers: int | None = None,
) -> dict[str, float]:
    """In the measuring subprocess: one release run, timed, with its memory figures."""
    from aggregate.release import BUCKET_WORKERS, release_ready_buckets
    from aggregate.residue import CLIP_TABLES
    from core.db import Database
    from core.keystore import open_key_store
    from core.storage import BlobStore, open_store
    from policies.policy import load_policy

    database = Database(database_url)
    store: BlobStore = open_store(store_url)
    if layout == "rows":
        store = RowPendingStore(database, store)
        _prefetching_shards()
    policy = load_policy("demo")
    baseline_mb = _peak_rss_mb()
    started = time.perf_counter()
    outcomes = release_ready_buckets(
        database,
        store,
        policy,
        keys=open_key_store(KEY_STORE_URL, database_url=database_url),
        batch_size=batch_size,
        bucket_workers=BUCKET_WORKERS if bucket_workers is None else bucket_workers,
    )
    seconds = time.perf_counter() - started
    # The release cycle then purges what the deletes left in the database's and the store's
    # files (aggregate.residue, P3/P4); the rows layout's pending_audio is one more clip table.
    started = time.perf_counter()
    tables = CLIP_TABLES + ((PENDING_AUDIO,) if layout == "rows" else ())
    database.purge_residue(tables)
    store.compact()
    residue_seconds = time.perf_counter() - started
    # What the release left of the pending side (0: every clip released and removed).
    if layout == "rows":
        import sqlalchemy as sa

        with database.connection() as connection:
            left = connection.execute(
                sa.select(sa.func.count()).select_from(_audio_table())
            ).scalar_one()
    else:
        left = sum(1 for _ in store.list("pending/"))
    database.dispose()
    return {
        "pending_left": left,
        "bucket_workers": BUCKET_WORKERS if bucket_workers is None else bucket_workers,
        "buckets": len(outcomes),
        "clips": sum(o.clip_count for o in outcomes),
        "seconds": seconds,
        "residue_s": round(residue_seconds, 2),
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


def _measure(
    database_url: str,
    store_url: str,
    batch_size: int,
    layout: str = "objects",
    bucket_workers: int | None = None,
) -> dict[str, float]:
    workers = [] if bucket_workers is None else ["--bucket-workers", str(bucket_workers)]
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--measure",
            database_url,
            store_url,
            "--batch-size",
            str(batch_size),
            "--layout",
            layout,
            *workers,
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
    kind: str,
    *,
    buckets: int,
    clips: int,
    batch_size: int,
    database: str | None,
    layout: str = "objects",
    bucket_workers: int | None = None,
) -> dict[str, object]:
    """Release throughput on one store, next to ``tar`` of the same pending blobs (the file
    store's own pending folder, or a local copy of the same sealed blobs)."""
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        if database == "postgres":
            from chorus.devservers_postgres import provision_postgres_database

            database_url = stack.enter_context(provision_postgres_database(prefix="chorus_bench"))
        else:
            database_url = database or f"sqlite:///{workdir / 'chorus.db'}"
        with _store(kind, workdir) as store_url:
            in_store = kind == "file" and layout == "objects"
            local = workdir / "blobs" if in_store else workdir / "local-copy"
            t0 = time.perf_counter()
            seed(
                database_url,
                store_url,
                buckets=buckets,
                clips=clips,
                copy_to=None if in_store else local,
                layout=layout,
            )
            seeding = time.perf_counter() - t0
            tar_s = tar_baseline(local, workdir / "pending.tar")
            if not in_store:
                shutil.rmtree(local)
            load_before = os.getloadavg()[0]
            figures: dict[str, object] = dict(
                _measure(database_url, store_url, batch_size, layout, bucket_workers)
            )
            load_after = os.getloadavg()[0]
    release_rate = float(figures["clips"]) / float(figures["seconds"])  # type: ignore[arg-type]
    tar_rate = buckets * clips / tar_s
    figures.update(
        store=kind,
        layout=layout,
        database=database_url.split(":", 1)[0].split("+", 1)[0],
        load=f"{load_before:.1f}->{load_after:.1f}",
        seeding_s=round(seeding, 1),
        clips_per_s=round(release_rate, 1),
        # the release and the residue purge after it, as a release cycle runs them
        with_residue_clips_per_s=round(
            float(figures["clips"])  # type: ignore[arg-type]
            / (float(figures["seconds"]) + float(figures["residue_s"])),  # type: ignore[arg-type]
            1,
        ),
        tar_s=round(tar_s, 2),
        tar_clips_per_s=round(tar_rate, 1),
        ratio_to_tar=round(release_rate / tar_rate, 3),
    )
    return figures


def ingest(
    kind: str, *, uploads: int, threads: int, database: str | None, layout: str
) -> dict[str, object]:
    """The pending side of an upload alone (``aggregate.pending.put_pending_clip``: seal,
    store, the row's transaction), ``uploads`` of them from ``threads`` threads, 40 a
    bucket: under ``layout="rows"`` the sealed clip is inserted in the row's own transaction
    instead of stored as an object. Sanitizing (the same for both layouts) is not included."""
    from aggregate.pending import PendingFacts, SanitizedAudio, put_pending_clip
    from core.db import Database
    from core.ids import new_id
    from core.keystore import open_key_store
    from core.storage import BlobStore, open_store

    data, duration, rate = _flac_sample()
    facts = PendingFacts(
        duration_s=duration, sample_rate=rate, loudness_dbfs=-20.0, source_sample_rate=rate
    )
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        if database == "postgres":
            from chorus.devservers_postgres import provision_postgres_database

            database_url = stack.enter_context(provision_postgres_database(prefix="chorus_bench"))
        else:
            database_url = database or f"sqlite:///{workdir / 'chorus.db'}"
        store_url = stack.enter_context(_store(kind, workdir))
        db = Database(database_url)
        db.upgrade()
        store: BlobStore = open_store(store_url)
        keys = open_key_store(KEY_STORE_URL, database_url=database_url)
        rows: RowPendingStore | None = None
        if layout == "rows":
            create_audio_table(db)
            rows = RowPendingStore(db, store)
            store = rows
        run = new_id()[:8]

        def upload(n: int) -> None:
            exercise_id = f"ingest-{run}-{n // 40}"

            def in_transaction(connection: Any) -> None:
                if rows is not None:
                    import sqlalchemy as sa

                    from aggregate.tables import Bucket

                    bucket_id = connection.execute(
                        sa.select(Bucket.id).where(
                            Bucket.exercise_id == exercise_id, Bucket.state == "open"
                        )
                    ).scalar_one()
                    rows.insert_held(connection, bucket_id)

            put_pending_clip(
                db,
                store,
                keys=keys,
                exercise_id=exercise_id,
                learner_id=new_id(),
                clip=SanitizedAudio(data, facts, os.urandom(32)),
                max_clips_per_contributor=1,
                in_transaction=in_transaction,
            )

        for n in range(threads):  # warm-up: open the pools and compile the statements
            upload(uploads + 40 * (n + 1))
        load_before = os.getloadavg()[0]
        cpu0 = time.process_time()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(upload, range(uploads)))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        load_after = os.getloadavg()[0]
        import sqlalchemy as sa

        from aggregate.tables import PendingClip

        with db.connection() as connection:
            stored = connection.execute(
                sa.select(sa.func.count()).select_from(PendingClip)
            ).scalar_one()
            if rows is not None:
                stored = min(
                    stored,
                    connection.execute(
                        sa.select(sa.func.count()).select_from(_audio_table())
                    ).scalar_one(),
                )
        db.dispose()
    return {
        "ingest": True,
        "stored": stored - threads,
        "store": kind,
        "layout": layout,
        "database": database_url.split(":", 1)[0].split("+", 1)[0],
        "uploads": uploads,
        "threads": threads,
        "seconds": round(seconds, 2),
        "uploads_per_s": round(uploads / seconds, 1),
        "client_cpu_ms_per_upload": round(1000 * cpu / uploads, 2),
        "load": f"{load_before:.1f}->{load_after:.1f}",
    }


def memory(sizes: list[int], *, batch_size: int) -> list[dict[str, object]]:
    """Peak memory of the release job for one bucket of each size (file store)."""
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
            workdir = Path(tmp)
            database_url = f"sqlite:///{workdir / 'chorus.db'}"
            store_url = f"file://{workdir / 'blobs'}"
            seed(database_url, store_url, buckets=1, clips=size)
            figures: dict[str, object] = dict(_measure(database_url, store_url, batch_size))
        figures.update(
            bucket_clips=size,
            growth_mb=round(
                float(figures["peak_rss_mb"]) - float(figures["baseline_rss_mb"]),  # type: ignore[arg-type]
                1,
            ),
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
    parser.add_argument(
        "--database",
        help="a database URL, or 'postgres' for a fresh PostgreSQL database per measurement "
        "(default: a fresh SQLite file)",
    )
    parser.add_argument(
        "--layout",
        choices=("objects", "rows", "both"),
        default="objects",
        help="where pending clips live: one sealed object each (the product), sealed rows "
        "beside their pending row (prototype), or both, interleaved",
    )
    parser.add_argument("--repeat", type=int, default=1, help="measurements per store/layout")
    parser.add_argument(
        "--bucket-workers",
        default="",
        help="buckets released at once, comma-separated to compare several (interleaved); "
        "default: the release's own (aggregate.release.BUCKET_WORKERS)",
    )
    parser.add_argument(
        "--measure", nargs=2, metavar=("DATABASE_URL", "STORE_URL"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--ingest",
        type=int,
        default=0,
        metavar="UPLOADS",
        help="measure the pending side of UPLOADS uploads per store/layout instead",
    )
    parser.add_argument("--ingest-threads", type=int, default=4)
    args = parser.parse_args()
    if args.measure:
        workers = int(args.bucket_workers) if args.bucket_workers else None
        database_url, store_url = args.measure
        print(
            json.dumps(run_release(database_url, store_url, args.batch_size, args.layout, workers))
        )
        return
    if args.quick:
        args.buckets, args.clips, args.memory_sizes = 10, 100, "500,5000"
    kinds = ("file", "seaweed") if args.store == "both" else (args.store,)
    layouts = ("objects", "rows") if args.layout == "both" else (args.layout,)
    if args.ingest:
        for kind in kinds:
            for _round in range(args.repeat):
                for layout in layouts:
                    row = ingest(
                        kind,
                        uploads=args.ingest,
                        threads=args.ingest_threads,
                        database=args.database,
                        layout=layout,
                    )
                    print(json.dumps(row), flush=True)
        return
    worker_counts: list[int | None] = [
        int(n) for n in args.bucket_workers.split(",") if n.strip()
    ] or [None]
    for kind in kinds:
        for _round in range(args.repeat):
            for layout in layouts:
                for bucket_workers in worker_counts:
                    figures = bench(
                        kind,
                        buckets=args.buckets,
                        clips=args.clips,
                        batch_size=args.batch_size,
                        database=args.database,
                        layout=layout,
                        bucket_workers=bucket_workers,
                    )
                    print(json.dumps(figures), flush=True)
    sizes = [int(size) for size in args.memory_sizes.split(",") if size.strip()]
    for row in memory(sizes, batch_size=args.batch_size):
        print(json.dumps({"memory": row}), flush=True)


if __name__ == "__main__":
    main()
